"""Data-parallel training (``%ft_train --gpus N``): tokens/s with 1 and N processes on the same data and the
same global batch, and the scaling efficiency tokens/s(N) / (N x tokens/s(1)).

Every process count trains the same run: the same rows, seed, LoRA, steps, batch size per process, and the
same global batch, by giving N processes a gradient accumulation of G/N (G, the global accumulation, is
divisible by every N). accelerate hands process p the batches p, p+N, ... of one shuffled order, so each
optimizer step sums the same examples at every N (the per-step losses are kept to show it). LoRA dropout 0,
no validation (``--validation 0``), one checkpoint at the end (save_steps beyond the run). Each run is a
fresh process that imports torch, transformers and TRL before its clock starts, as a notebook kernel has
them, and trains through ``api.prepare_training(data, gpus=N).train()``: one process trains in itself,
N > 1 launch N workers with accelerate and supervise them, exactly as ``%ft_train --gpus N`` does.

Measured from the run store rank 0 writes: the clock runs from the metrics record of warm-up step W to the
record of the last step (each record has a ``time``), so start-up and the final checkpoint are left out.
Tokens are the non-padding tokens of steps W+1..last: TRL's ``num_tokens``, which TRL gathers over all
processes before rank 0 logs it (a global count; metrics.jsonl keeps only the tokens/s derived from it, so
it is read from the final checkpoint's trainer_state.json). The same count at every N is checked, so a count
of rank 0's share alone would show. Wall time is reported apart: from ``prepare_training`` to the end of
``train()``, so it holds the plumbing's cost (worker start, a model load per process, the supervision).
Rounds alternate the order of the process counts, so drift in the machine's speed falls on all of them;
tokens/s min, median and best and wall min and median over rounds are kept;
efficiency from the medians and from the best rounds (a run another process slowed is marked disturbed).

Threads: a single process uses every core; N processes get cores/N each (OMP_NUM_THREADS, which accelerate
passes to its workers; without it accelerate would set 1 per worker), so every count runs as many threads
as there are cores. The threads the workers really had are recorded.

    python bench/bench_ddp.py [--steps 12] [--warmup 2] [--rounds 2] [--out bench/results/ddp-cpu<cores>.json]
    python bench/bench_ddp.py --gpu [--quant 4bit] [--processes 1,8] [--work DIR --keep]
    python bench/bench_ddp.py --smoke   # the --gpu code path on CPU: tiny model, 2 gloo processes

CPU (default): the packaged SmolLM2-135M on the example tickets, N in {1, 2}, G 2, fp32, no gradient
checkpointing. On a 2-core machine this shows the plumbing's cost, not a speed-up (see CAVEAT).
GPU (``--gpu``): a random-initialised Llama-3.2-1B-shaped model built from its config (bench_gpu.py; nothing
is downloaded), chat rows of 93-99.6% of 2048 tokens, bf16 LoRA (``--quant none``) or QLoRA (``--quant
4bit``), gradient checkpointing, the hf backend at every N (unsloth trains on one GPU only), N in {1, every
visible GPU}, G = the largest N. Target: each added GPU adds at least 0.9 of one GPU's tokens/s,
(tokens/s(N) - tokens/s(1)) / ((N - 1) x tokens/s(1)) >= 0.9; a miss is printed as MISSED (exit code 0).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

import bench_gpu  # the random Llama models, their tokenizer and the long chat rows
from results_io import report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "tickets.jsonl"
SEED, SAVE_STEPS, TARGET = 0, 10_000, 0.9
MODES: dict[str, dict[str, Any]] = {
    "cpu": {"model": "smollm2-135m", "steps": 12, "warmup": 2, "batch_size": 2, "max_length": 1024, "lr": 3e-4,
            "rank": 16, "alpha": 32, "target_modules": ["all-linear"], "gradient_checkpointing": False},
    "gpu": {"model": "1b", "steps": 30, "warmup": 5, "batch_size": 4, "max_length": 2048, "lr": bench_gpu.LR,
            "rank": bench_gpu.RANK, "alpha": bench_gpu.ALPHA, "target_modules": list(bench_gpu.TARGETS),
            "gradient_checkpointing": True},
    "smoke": {"model": "tiny", "steps": 4, "warmup": 1, "batch_size": 2, "max_length": 256, "lr": bench_gpu.LR,
              "rank": bench_gpu.RANK, "alpha": bench_gpu.ALPHA, "target_modules": list(bench_gpu.TARGETS),
              "gradient_checkpointing": True},
}
CAVEAT = ("On a CPU the N processes share the same cores (here {cores}: {threads}), so the work per second cannot "
          "grow with N; the processes only split it, and the efficiency says what the multi-process plumbing "
          "costs: a copy of the model per process, gloo all-reduces of the LoRA gradients at each step, smaller "
          "matrix products per thread, and, in the wall time, starting the workers and loading the model in "
          "each. It is no measure of GPU scaling: there each process has a device of its own, and the same "
          "script with --gpu measures that.")
DISTURBED = 2.0
"""A timed step this many times the run's median step marks the run as disturbed (another process took the
cores for a while): the best round, not the median, is then the measure."""
LOSS_TOLERANCE = 1e-4
"""Smoke check: fp32 losses of 1 and 2 processes agree this closely (tests/test_data_parallel.py measures 1e-6)."""


# ---------------------------------------------------------------------------------------------- children

def child(a: argparse.Namespace) -> None:
    """One run with ``a.child`` processes; what it measured goes to ``a.result`` as JSON."""
    import peft  # noqa: F401  what a kernel has imported before a cell trains: not part of the plumbing's cost
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from jupyter_finetune import api
    from jupyter_finetune.models.gpus import kernel_device, visible_gpus

    spec, n = json.loads(a.spec), a.child
    s = spec["settings"]
    data = (api.load_data("tickets", DATA) if spec["data"] is None else
            api.load_data("bench", Path(spec["data"]), split=0.0, model=spec["model"], max_length=s["max_length"]))
    start_wall, start = time.time(), time.perf_counter()
    job = api.prepare_training(
        data, name=f"ddp-{n}", overwrite=True, runs_dir=Path(spec["runs_dir"]), model=spec["model"], gpus=n,
        grad_accum=spec["global_accum"] // n, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
        rank=s["rank"], alpha=s["alpha"], dropout=0.0, target_modules=",".join(s["target_modules"]), seed=SEED,
        max_length=s["max_length"], save_steps=SAVE_STEPS, validation=0.0, backend="hf", quant=spec["quant"],
        gradient_checkpointing=s["gradient_checkpointing"])
    probe = ThreadProbe(job, n)
    job.listeners.append(probe)
    result = job.train()
    wall, end_wall = time.perf_counter() - start, time.time()
    if result.status != "completed":
        raise SystemExit(f"the run with {n} processes ended {result.status}: {result.message}")
    cell = measure(job.run, s["warmup"], s["steps"])
    cell.update(wall_s=round(wall, 2), to_first_step_s=round(cell.pop("first_time") - start_wall, 2),
                after_last_step_s=round(end_wall - cell.pop("last_time"), 2), threads=probe.seen,
                grad_accum=spec["global_accum"] // n, backend=job.run.settings().backend,
                device=kernel_device(), gpus_visible=visible_gpus(), torch=torch.__version__,
                versions=bench_gpu.versions())
    Path(a.result).write_text(json.dumps(cell))


def measure(run: Any, warmup: int, steps: int) -> dict[str, Any]:
    """Tokens/s over steps warmup+1..last from rank 0's records, tokens by TRL's global count."""
    records = {r["step"]: r for r in run.metrics() if r.get("loss") is not None}
    if sorted(records) != list(range(1, steps + 1)):
        raise SystemExit(f"expected one metrics record per step 1..{steps}, got steps {sorted(records)}")
    checkpoint = run.last_checkpoint()
    if checkpoint is None:
        raise SystemExit(f"no checkpoint in {run.checkpoints_dir}: TRL's token count is read from the last one")
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    counted = {h["step"]: int(h["num_tokens"]) for h in history if "num_tokens" in h}
    (t0, t1), tokens = (records[warmup]["time"], records[steps]["time"]), counted[steps] - counted[warmup]
    times = [records[i]["time"] for i in range(1, steps + 1)]
    timed = [b - a for a, b in zip(times[warmup - 1:], times[warmup:])]
    return {"steps_timed": steps - warmup, "seconds": round(t1 - t0, 3), "tokens": tokens,
            "tokens_all_steps": counted[steps], "tokens_per_s": round(tokens / (t1 - t0), 1),
            "dashboard_tokens_per_s": round(records[steps]["tokens_per_s"], 1),
            "step_seconds": [round(b - a, 3) for a, b in zip(times, times[1:])],
            "slowest_step_over_median": round(max(timed) / statistics.median(timed), 2),
            "losses": [records[i]["loss"] for i in range(1, steps + 1)],
            "memory_gb_rank0": round(records[steps]["memory_gb"], 2), "first_time": times[0], "last_time": t1}


class ThreadProbe:
    """At the first logged step: the threads each training process runs with (the workers' own
    OMP_NUM_THREADS and thread count, read through psutil; this process's torch threads when it trains)."""

    def __init__(self, job: Any, processes: int):
        self.job, self.processes = job, processes
        self.seen: list[dict[str, Any]] | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.seen is not None or event["event"] != "log":
            return
        if self.processes == 1:
            import torch

            self.seen = [{"rank": 0, "torch_threads": torch.get_num_threads(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}]
            return
        self.seen = []
        for pid in self.job.pids:
            try:
                process = psutil.Process(pid)
                env = process.environ()
                if "RANK" not in env or "jupyter_finetune.worker" not in " ".join(process.cmdline()):
                    continue  # the launcher, not a worker
                self.seen.append({"rank": int(env.get("RANK", -1)), "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS"),
                                  "os_threads": process.num_threads()})
            except psutil.Error:  # a process that ended, or a launcher process we may not read
                continue
        self.seen.sort(key=lambda w: w["rank"])


# ------------------------------------------------------------------------------------------------ parent

def run_child(n: int, a: argparse.Namespace, spec: dict[str, Any], round_: int) -> dict[str, Any]:
    """One run in a fresh process (its threads set for ``n`` processes); its cell, or its error."""
    result, log = a.work / f"ddp-{n}-r{round_}.json", a.work / "logs" / f"ddp-{n}-r{round_}.log"
    result.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, a.cores // n))
    env = {**os.environ, **bench_gpu.CHILD_ENV, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--spec", json.dumps(spec),
           "--result", str(result)]
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=a.work, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            end_tree(proc.pid)
            code = None
    process_s = round(time.perf_counter() - start, 1)
    if code == 0 and result.exists():
        return {"ok": True, **json.loads(result.read_text()), "process_s": process_s}
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"(Error|Exception)\b|out of memory|ended (failed|stopped)", line)]
    error = f"timed out after {a.timeout} s" if code is None else (errors or lines or [f"exit code {code}"])[-1]
    print(f"  failed: {error[:300]}\n  log {log}, last lines:\n    " + "\n    ".join(lines[-15:]), flush=True)
    return {"ok": False, "error": error[:500], "log_tail": lines[-15:], "process_s": process_s}


def end_tree(pid: int) -> None:
    """The timed-out child and every process under it: its workers run in a session of their own
    (engine.supervise), so a process group kill would miss them."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(tree, timeout=30)


def prepare_model(a: argparse.Namespace, settings: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """The model (a path or alias), the data file (None: the example tickets) and what describes them."""
    if a.mode == "cpu":
        from jupyter_finetune.models import resolve_model

        folder = resolve_model(settings["model"]).path  # packaged: nothing is downloaded
        for path in Path(folder).rglob("*"):  # into the page cache, so the first run reads no colder disk
            if path.is_file():
                path.read_bytes()
        return settings["model"], None, {"model": f"{settings['model']} ({folder})", "data": str(DATA)}
    shim = argparse.Namespace(work=a.work, timeout=a.timeout, steps=settings["steps"], warmup=settings["warmup"],
                              batch_size=settings["batch_size"], max_length=settings["max_length"])
    folder, _ = bench_gpu.model_folder(shim, settings["model"])
    rows = settings["steps"] * settings["batch_size"] * a.global_accum  # each row trained once
    data, lengths = bench_gpu.write_data(folder, rows, settings["max_length"])
    return str(folder), str(data), {
        "model": f"random Llama, config {settings['model']}", "config": bench_gpu.MODELS[settings["model"]],
        "rows": rows, "row_tokens_min_mean_max": [min(lengths), round(sum(lengths) / len(lengths)), max(lengths)]}


def summarise(runs: dict[int, list[dict[str, Any]]], order: list[list[int]]) -> dict[str, Any]:
    """Per process count: tokens/s (min, median, max) and wall (min, median); against one process: efficiency,
    the gain per added process and the wall ratio, per round, of the medians and of the best rounds (the
    fastest of each count: the measure that interference from other processes cannot inflate)."""
    one = runs[1]
    out: dict[str, Any] = {}
    for n, cells in runs.items():
        ok = [c for c in cells if c["ok"]]
        entry: dict[str, Any] = {"runs_ok": len(ok), "runs": len(cells)}
        if ok:
            tps, wall = [c["tokens_per_s"] for c in ok], [c["wall_s"] for c in ok]
            entry.update(tokens_per_s={"min": min(tps), "median": round(statistics.median(tps), 1), "max": max(tps),
                                       "all": tps},
                         wall_s={"min": min(wall), "median": round(statistics.median(wall), 2), "all": wall},
                         to_first_step_s=[c["to_first_step_s"] for c in ok],
                         disturbed_rounds=[i + 1 for i, c in enumerate(cells)
                                           if c["ok"] and c["slowest_step_over_median"] > DISTURBED])
        if n > 1:
            rounds = [(i, c1, cn) for i, (c1, cn) in enumerate(zip(one, cells)) if c1["ok"] and cn["ok"]]
            pairs = [(c1, cn) for _, c1, cn in rounds]
            entry["per_round"] = [{"round": i + 1, "order": order[i],
                                   "efficiency": round(cn["tokens_per_s"] / (n * c1["tokens_per_s"]), 3),
                                   "wall_ratio": round(cn["wall_s"] / c1["wall_s"], 3),
                                   "same_tokens": cn["tokens_all_steps"] == c1["tokens_all_steps"],
                                   "max_loss_difference": max(abs(x - y) for x, y in zip(c1["losses"], cn["losses"]))}
                                  for i, c1, cn in rounds]
            if pairs:
                for suffix, pick, fastest in (("", statistics.median, statistics.median), ("_best", max, min)):
                    t1, tn = (pick(c["tokens_per_s"] for c in cs) for cs in zip(*pairs))
                    w1, wn = (fastest(c["wall_s"] for c in cs) for cs in zip(*pairs))
                    entry.update({f"efficiency{suffix}": round(tn / (n * t1), 3),
                                  f"gain_per_added_process{suffix}": round((tn - t1) / ((n - 1) * t1), 3),
                                  f"wall_ratio{suffix}": round(wn / w1, 3)})
        out[str(n)] = entry
    return out


def print_table(result: dict[str, Any]) -> None:
    runs, processes = result["runs"], result["processes"]
    header = ["round", "order", *[f"N={n} tok/s" for n in processes], *[f"eff N={n}" for n in processes[1:]],
              *[f"N={n} wall s" for n in processes], *[f"wall N={n}/N=1" for n in processes[1:]]]
    rows = [header]
    for i, order in enumerate(result["order"]):
        cells = [runs[str(n)][i] for n in processes]
        if not all(c["ok"] for c in cells):
            rows.append([str(i + 1), ",".join(map(str, order)), "FAILED"])
            continue
        t1, w1 = cells[0]["tokens_per_s"], cells[0]["wall_s"]
        mark = ["*" if c["slowest_step_over_median"] > DISTURBED else "" for c in cells]
        rows.append([str(i + 1), ",".join(map(str, order)),
                     *[f"{c['tokens_per_s']:,.1f}{m}" for c, m in zip(cells, mark)],
                     *[f"{c['tokens_per_s'] / (n * t1):.3f}" for n, c in zip(processes[1:], cells[1:])],
                     *[f"{c['wall_s']:.1f}" for c in cells], *[f"{c['wall_s'] / w1:.3f}" for c in cells[1:]]])
    widths = [max(len(r[i]) for r in rows if len(r) == len(header)) for i in range(len(header))]
    print("\n" + "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    for n, entry in result["summary"].items():
        if "tokens_per_s" in entry:
            tps, wall = entry["tokens_per_s"], entry["wall_s"]
            line = (f"N={n}: tokens/s min {tps['min']:,.1f} median {tps['median']:,.1f}; "
                    f"wall s min {wall['min']:.1f} median {wall['median']:.1f}")
            if "efficiency" in entry:
                line += (f"\n  medians: efficiency {entry['efficiency']:.3f}, gain per added process "
                         f"{entry['gain_per_added_process']:.3f}, wall ratio {entry['wall_ratio']:.3f}"
                         f"\n  best rounds: efficiency {entry['efficiency_best']:.3f}, gain per added process "
                         f"{entry['gain_per_added_process_best']:.3f}, wall ratio {entry['wall_ratio_best']:.3f}")
            print(line)
    if any(e.get("disturbed_rounds") for e in result["summary"].values()):
        print(f"* disturbed: a timed step took over {DISTURBED:g}x the run's median step (another process had the "
              "cores); prefer the best rounds")


def parent(a: argparse.Namespace) -> None:
    settings = {**MODES[a.mode], **{k: getattr(a, k) for k in ("steps", "warmup", "batch_size") if getattr(a, k)}}
    if not 1 <= settings["warmup"] < settings["steps"]:
        raise SystemExit("--warmup must be from 1 to below --steps")
    if a.processes is None:
        a.processes = [1, visible_gpu_count()] if a.mode == "gpu" else [1, 2]
    if a.processes[0] != 1 or len(set(a.processes)) < 2 or a.processes != sorted(set(a.processes)):
        raise SystemExit(f"--processes {a.processes}: give 1 and larger counts in rising order (this machine "
                         f"sees {visible_gpu_count()} GPUs)" if a.mode == "gpu" else f"--processes {a.processes}: "
                         "give 1 and larger counts in rising order")
    a.global_accum = a.global_accum or math.lcm(*a.processes)
    if any(a.global_accum % n for n in a.processes):
        raise SystemExit(f"--global-accum {a.global_accum} must be divisible by every process count {a.processes}")
    a.cores = len(os.sched_getaffinity(0))
    own_work = a.work is None
    a.work = Path(tempfile.mkdtemp(prefix="bench-ddp-")) if own_work else a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    os.environ.update(bench_gpu.CHILD_ENV)
    try:
        model, data, described = prepare_model(a, settings)
        spec = {"settings": settings, "model": model, "data": data, "quant": a.quant, "global_accum": a.global_accum,
                "runs_dir": str(a.work / "runs")}
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in a.processes}
        order = []
        for i in range(a.rounds):
            order.append(a.processes if i % 2 == 0 else a.processes[::-1])
            for n in order[-1]:
                print(f"round {i + 1}: {n} process{'es' * (n > 1)}, grad_accum {a.global_accum // n}, "
                      f"{max(1, a.cores // n)} threads each", flush=True)
                cell = run_child(n, a, spec, i)
                runs[n].append(cell)
                if cell["ok"]:
                    print(f"  {cell['tokens_per_s']:,.1f} tokens/s over steps {settings['warmup'] + 1}.."
                          f"{settings['steps']}, wall {cell['wall_s']} s (first step at {cell['to_first_step_s']} s)",
                          flush=True)
    finally:
        if own_work and not a.keep:
            import shutil

            shutil.rmtree(a.work, ignore_errors=True)
        elif a.keep:
            print(f"kept {a.work}: pass --work {a.work} to reuse its model", flush=True)
    result = assemble(a, settings, described, runs, order)
    a.out = a.out or default_out(a, result["device"])
    report(result, a.out)
    print_table(result)
    conclude(a, result)


def assemble(a: argparse.Namespace, settings: dict[str, Any], described: dict[str, Any],
             runs: dict[int, list[dict[str, Any]]], order: list[list[int]]) -> dict[str, Any]:
    first = next((c for cells in runs.values() for c in cells if c["ok"]), {})
    device = first.get("device", "unknown")
    if a.mode == "cpu":
        device = f"CPU, {a.cores} cores"
    elif first.get("gpus_visible"):
        device = f"{first['gpus_visible']} x {device}"
    threads = f"1 process: {a.cores} threads; N processes: {a.cores}/N threads each (OMP_NUM_THREADS)"
    result = {
        "benchmark": "data-parallel training (%ft_train --gpus N): tokens/s at 1 and N processes, same data and "
                     "global batch", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": a.mode, "device": device, "processes": a.processes, "rounds": a.rounds, "order": order,
        "settings": {**settings, "global_accum": a.global_accum,
                     "global_batch": settings["batch_size"] * a.global_accum,
                     "quant": a.quant, "dropout": 0.0, "seed": SEED, "validation": 0.0, "save_steps": SAVE_STEPS,
                     "backend": "hf", "threads": threads, **described},
        "timing": f"tokens/s: TRL's global count of non-padding tokens over steps {settings['warmup'] + 1}.."
                  f"{settings['steps']} / the time between rank 0's metrics records of those steps; wall_s: from "
                  "prepare_training to the end of train() (worker start, model loads, final checkpoint included)",
        "efficiency": "tokens/s(N) / (N x tokens/s(1)); gain per added process: (tokens/s(N) - tokens/s(1)) / "
                      "((N - 1) x tokens/s(1))",
        "summary": summarise(runs, order), "versions": first.get("versions"),
        "runs": {str(n): [{k: v for k, v in c.items() if k != "versions"} for c in cells] for n, cells in runs.items()}}
    if a.mode == "cpu":
        result["caveat"] = CAVEAT.format(cores=a.cores, threads=threads)
    else:
        result["targets"] = {f"gain per added GPU, N={n}": {"value": e["gain_per_added_process"],
                                                           "target": f">= {TARGET}",
                                                           "met": e["gain_per_added_process"] >= TARGET}
                             for n, e in result["summary"].items() if "gain_per_added_process" in e}
    return result


def conclude(a: argparse.Namespace, result: dict[str, Any]) -> None:
    if a.mode == "cpu":
        print("\n" + result["caveat"])
    else:
        for name, t in result["targets"].items():
            print(f"{name} = {t['value']:.3f} (target {t['target']}): {'met' if t['met'] else 'MISSED'}")
    print(f"\nwritten to {a.out}")
    if a.mode == "smoke":
        check_smoke(result)


def check_smoke(result: dict[str, Any]) -> None:
    """The GPU code path works end to end on CPU: every run completed, N processes trained exactly the same
    tokens as one (so rank 0's count is global) and the same losses (so the global batch is the same)."""
    failed = {n: [c["error"] for c in cells if not c["ok"]] for n, cells in result["runs"].items()}
    if any(failed.values()):
        raise SystemExit(f"smoke: failed runs {failed}")
    for n, entry in result["summary"].items():
        for r in entry.get("per_round", []):
            if not r["same_tokens"] or r["max_loss_difference"] > LOSS_TOLERANCE:
                raise SystemExit(f"smoke: N={n} against N=1: {r}")
    print("smoke: every run completed; N=2 trained the same tokens as N=1 with the same losses (within "
          f"{LOSS_TOLERANCE}); the workers' threads: {result['runs'][str(result['processes'][-1])][0]['threads']} "
          "(the speeds of a tiny model on a CPU mean nothing)")


def visible_gpu_count() -> int:
    """The GPUs the children will see; counting them opens no CUDA context here (the children need the memory)."""
    import torch

    return torch.cuda.device_count()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="GPU mode: random Llama-3.2-1B shape, 2048 tokens, bf16 LoRA")
    p.add_argument("--smoke", action="store_true", help="the GPU mode's code on CPU: tiny model, numbers mean nothing")
    p.add_argument("--processes", type=lambda s: [int(x) for x in s.split(",")],
                   help="process counts, 1 first (default 1,2; with --gpu 1 and every visible GPU)")
    p.add_argument("--global-accum", type=int, help="G: gradient accumulation at 1 process, G/N at N "
                                                     "(default: the least common multiple of the counts)")
    p.add_argument("--steps", type=int, help="optimizer steps per run (default 12 CPU, 30 GPU, 4 smoke)")
    p.add_argument("--warmup", type=int, help="first steps left out of tokens/s (default 2 CPU, 5 GPU, 1 smoke)")
    p.add_argument("--batch-size", type=int, help="examples per process per micro-step (default 2 CPU, 4 GPU)")
    p.add_argument("--quant", choices=("none", "4bit"), default="none", help="GPU: bf16 LoRA or QLoRA")
    p.add_argument("--rounds", type=int, help="rounds, each running every count (default 2; 1 with --smoke)")
    p.add_argument("--timeout", type=int, default=1200, help="seconds one run may take, start-up included")
    p.add_argument("--work", type=Path, help="folder for the model, data, runs and logs (default: temporary)")
    p.add_argument("--keep", action="store_true", help="keep --work (a later --gpu run with it reuses the model)")
    p.add_argument("--out", type=Path, help="result JSON (default bench/results/ddp-<machine>.json; a temporary "
                                            "file with --smoke)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a)
        return
    sys.path.append(str(ROOT))  # jupyter_finetune, where it is not installed (a GPU machine's bare python)
    if a.gpu and a.smoke:
        p.error("--smoke runs the --gpu code path on CPU: give one of them")
    a.mode = "gpu" if a.gpu else "smoke" if a.smoke else "cpu"
    if a.quant != "none" and a.mode != "gpu":
        p.error("--quant 4bit needs --gpu (bitsandbytes on CUDA)")
    a.rounds = a.rounds or (1 if a.smoke else 2)
    parent(a)


def default_out(a: argparse.Namespace, device: str) -> Path:
    """bench/results/ddp-cpu2.json, ddp-h100-x8.json (-qlora with --quant 4bit); the smoke's in a temporary folder."""
    if a.mode == "smoke":
        return Path(tempfile.gettempdir()) / "bench-ddp-smoke.json"
    if a.mode == "cpu":
        return Path(__file__).parent / "results" / f"ddp-cpu{a.cores}.json"
    count, _, name = device.partition(" x ")
    quant = "-qlora" if a.quant == "4bit" else ""
    return Path(__file__).parent / "results" / f"ddp-{bench_gpu.slug(name)}-x{count}{quant}.json"

if __name__ == "__main__":
    main()
