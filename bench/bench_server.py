"""Soak test of the server extension: a store of 200 runs, one of them training with 1,000,000 metrics lines.

A real ``jupyter server`` (a subprocess, the extension on) serves the store while this process polls it
as the lab sidebar does, every 2.5 s: ``runs``, then ``runs/<name>/metrics?after=&attempt=`` for the
training run, whose ``updated`` time changes at every poll because a writer thread here keeps
logging steps to it (append a metrics line, rewrite status.json, as the trainer callback does).
The first request of each kind reads every file once and is reported apart ("cold"); every later
one should read only what changed. Target: each warm request <= 200 ms. Peak server memory is the
server process's VmHWM.

    python bench/bench_server.py [--lines 1000000] [--runs 200] [--seconds 60] [--out bench/results/server-<machine>.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from results_io import report

from jupyter_finetune.runs import RunSettings, RunStore

POLL_S = 2.5
LOG_EVERY_S = 0.25
TRAINING = "long-training"
MODEL = "smollm2-135m"


def settings(steps: int) -> RunSettings:
    return RunSettings({"model": MODEL, "steps": steps, "lr": 2e-4, "rank": 16, "batch_size": 8}, "balanced",
                       "hf: bench", MODEL)


def metrics_lines(first: int, last: int, max_steps: int, eval_every: int = 100) -> str:
    """What the trainer logs for steps first..last: a train record a step, an eval record every ``eval_every``."""
    return "".join(
        f'{{"step": {s}, "max_steps": {max_steps}, "epoch": {s / 1000:.4f}, "loss": {1 + 1 / s:.6f}, '
        f'"eval_loss": null, "lr": 0.0002, "tokens_per_s": 1234.5, "memory_gb": 1.5, "eta_s": 10.0, '
        f'"time": {1.7e9 + s}}}\n' + (f'{{"step": {s}, "eval_loss": {2 + 1 / s:.6f}}}\n' if s % eval_every == 0 else "")
        for s in range(first, last + 1))


def build_store(root: Path, runs: int, lines: int) -> RunStore:
    """``runs - 1`` completed runs of 300 steps, and one training run at step ``lines``."""
    store = RunStore.at(root)
    for i in range(runs - 1):
        run = store.create(f"done-{i:03d}")
        run.begin(settings(300), _manifest(), "")
        (run.path / "metrics.jsonl").write_text(metrics_lines(1, 300, 300))
        run.set_status("completed", step=300, max_steps=300)
    run = store.create(TRAINING)
    run.begin(settings(2 * lines), _manifest(), "")
    with open(run.path / "metrics.jsonl", "w") as f:
        for start in range(1, lines + 1, 100_000):
            f.write(metrics_lines(start, min(lines, start + 99_999), 2 * lines))
    run.set_status("running", step=lines, max_steps=2 * lines)
    return store


def _manifest() -> Any:
    from jupyter_finetune.runs import DataManifest

    return DataManifest("tickets", "0123456789ab", "messages", "0.1", 0, MODEL, 1024, 90, 10, 5000, 50.0, 60)


def keep_training(store: RunStore, step: int, stop: threading.Event) -> None:
    """The trainer: a log step every LOG_EVERY_S (a metrics line, then status.json rewritten)."""
    run = store.get(TRAINING)
    max_steps = run.status()["max_steps"]
    while not stop.wait(LOG_EVERY_S):
        step += 1
        with open(run.path / "metrics.jsonl", "a") as f:
            f.write(metrics_lines(step, step, max_steps))
        run.set_status("running", step=step, max_steps=max_steps)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: RunStore, home: Path) -> tuple[subprocess.Popen, str, str]:
    """``jupyter server`` on a free port with a random token; its process, its API's URL and the token."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    env.pop("JUPYTER_FINETUNE_RUNS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={home}",
         "--ServerApp.jpserver_extensions=jupyter_finetune=True", f"--JupyterFinetune.runs_dir={store.root}"],
        stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT, env=env, cwd=home)
    base = f"http://127.0.0.1:{port}/jupyter-finetune/api/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            get(base, "resources", token)
            return server, base, token
        except OSError:
            if server.poll() is not None:
                sys.exit(f"jupyter server exited:\n{(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
    sys.exit("jupyter server did not answer in 120 s")


def get(base: str, path: str, token: str) -> tuple[Any, float]:
    start = time.perf_counter()
    request = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=300) as response:
        body = json.loads(response.read())
    return body, (time.perf_counter() - start) * 1000


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def spread(times: list[float]) -> dict[str, float]:
    return {"n": len(times), "min_ms": round(min(times), 1), "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1)}


def poll(base: str, token: str, seconds: float) -> dict[str, Any]:
    """The sidebar's loop: runs, then the training run's new records (as MetricsFeed asks for them)."""
    runs_ms, metrics_ms, records = [], [], []
    cold: dict[str, float] = {}
    listing, cold["runs"] = get(base, "runs", token)
    page, cold["metrics_from_scratch"] = get(base, f"runs/{TRAINING}/metrics?after=-1", token)
    records += page["metrics"]
    thinned, first = page["thinned"], records[-1]["step"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        listing, ms = get(base, "runs", token)
        runs_ms.append(ms)
        last = records[-1]
        page, ms = get(base, f"runs/{TRAINING}/metrics?after={last['step'] - 1}&attempt={last['attempt']}", token)
        metrics_ms.append(ms)
        records += [r for r in page["metrics"] if r["step"] > last["step"]]
    polled = [r["step"] for r in records if "lr" in r and r["step"] > first]
    return {"cold_ms": {k: round(v, 1) for k, v in cold.items()}, "runs_request": spread(runs_ms),
            "metrics_after_request": spread(metrics_ms),
            "runs_listed": len(listing["runs"]), "first_page_thinned": thinned, "records_held": len(records),
            "steps_polled": len(polled), "no_step_missed": polled == list(range(first + 1, first + 1 + len(polled)))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000, help="steps of the training run's metrics")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60, help="how long to poll after the first requests")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        start = time.perf_counter()
        store = build_store(home / "ft_runs", args.runs, args.lines)
        size = (store.root / TRAINING / "metrics.jsonl").stat().st_size
        built_s = time.perf_counter() - start
        server, base, token = start_server(store, home)
        stop = threading.Event()
        writer = threading.Thread(target=keep_training, args=(store, args.lines, stop), daemon=True)
        try:
            writer.start()
            result = poll(base, token, args.seconds)
            result["server_peak_rss_mib"] = round(peak_rss_mib(server.pid), 1)
        finally:
            stop.set()
            writer.join()
            server.terminate()
            server.wait(timeout=30)
    report({"benchmark": "server soak: the sidebar polling a store of runs, one training with many metrics lines",
            "runs": args.runs, "metrics_lines": args.lines, "metrics_mb": round(size / 1e6, 1),
            "store_built_s": round(built_s, 1), "poll_every_s": POLL_S, "log_every_s": LOG_EVERY_S,
            "polled_s": args.seconds, **result, "target": "each warm request <= 200 ms",
            "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}, args.out)


if __name__ == "__main__":
    main()
