"""Fault injection over the whole training cycle (issue 16): each cycle trains a fresh run in a child
process that SIGKILLs itself at a random point, resumes it in fresh children until it completes (at
most MAX_RESUMES times), then judges it from a process that was not killed, as its user would: the
run is completed at its last step, its metrics history holds every step once, a resume that started
over or passed over a checkpoint said so, and the final adapter loads and generates a token.

Kill points, drawn with a seeded RNG (each kind in turn, the rest at random):
- step: inside the forward pass of a step (a step writes nothing, so any moment in it leaves the same files);
- save: while a checkpoint file or the final adapter is written: the file is cut to a random fraction
  of its length and the process dies before writing the rest; which file and which save vary;
- metrics: while the run store appends a step's metrics: what it appended is cut short of its
  newline and the process dies.

A fresh interpreter spends seconds importing torch, transformers, trl and peft, so a driver is
spawned fresh, imports them and runs no torch op (a fork after one can deadlock in OpenMP), and
every training attempt and the final adapter check is a fork of it. The forks compute on one
thread: the model is tiny, and on a busy 2-core machine a team of spinning OpenMP threads made an
attempt 4-6 times slower.

    python bench/bench_faults.py [--cycles 21] [--seed 16] [--out bench/results/faults-<machine>.json]
    python bench/bench_faults.py --only 10 --keep /tmp/faults   # cycle 10 of that draw again, its files kept
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' tiny model and rows

CYCLES, SEED = 21, 16  # seven cycles of each kind of kill point; tests/test_faults.py runs the same
MAX_RESUMES = 5
CHILD_TIMEOUT_S = 300  # an attempt that hangs is killed and counted as a failure
CHECKPOINT_FILES = ("adapter_model.safetensors", "training_args.bin", "optimizer.pt", "scheduler.pt",
                    "rng_state.pth", "trainer_state.json")  # in the order the Trainer writes them
FINAL_FILES = ("adapter_model.safetensors", "training_args.bin")  # written again into the final adapter folder
KINDS = ("step", "save", "metrics")
NOISE = re.compile(r"\S+: step \d+/\d+ |settings: ")  # the text dashboard's line per step; the settings echo


@dataclass(frozen=True)
class Plan:
    """The run every cycle trains: tiny, so that a cycle's few processes take seconds."""

    steps: int = 10
    save_steps: int = 3
    rows: int = 24
    batch_size: int = 2

    def saves(self) -> list[int]:
        """The steps the Trainer checkpoints at: every save_steps, and the last step."""
        return sorted({*range(self.save_steps, self.steps + 1, self.save_steps), self.steps})


@dataclass(frozen=True)
class KillPoint:
    """Where the first attempt of a cycle is SIGKILLed."""

    kind: str
    step: int
    file: str | None = None
    write: int = 0  # save: the how-manieth write of ``file``
    folder: str = ""  # save: the checkpoint (or the final adapter) that write belongs to
    fraction: float = 0.0  # save and metrics: the share of the bytes that reach the disk

    def __str__(self) -> str:
        if self.kind == "step":
            return f"inside step {self.step}"
        if self.kind == "metrics":
            return f"writing the metrics of step {self.step} ({self.fraction:.0%} written)"
        return f"writing {self.file} of {self.folder} ({self.fraction:.0%} written)"


def kill_points(rng: random.Random, cycles: int, plan: Plan) -> list[KillPoint]:
    """The kinds in turn; within a kind, points in a random order without repeats until all were drawn
    (the save points take each file in turn, so a few cycles already cut every file once)."""
    def shuffled(points: list[Any]) -> list[Any]:
        return rng.sample(points, len(points))

    writes_of = {file: shuffled(list(enumerate(plan.saves() + ([plan.steps] if file in FINAL_FILES else []), 1)))
                 for file in shuffled(list(CHECKPOINT_FILES))}
    saves = []
    for n in range(len(plan.saves()) + 1):
        for file, writes in writes_of.items():
            if n < len(writes):
                write, step = writes[n]
                folder = "the final adapter" if write > len(plan.saves()) else f"checkpoint-{step}"
                saves.append(KillPoint("save", step, file, write, folder))
    pools = {"step": [KillPoint("step", step) for step in shuffled(list(range(1, plan.steps + 1)))],
             "save": saves,  # metrics from step 2, so that a line is there to append to
             "metrics": [KillPoint("metrics", step) for step in shuffled(list(range(2, plan.steps + 1)))]}
    kinds = [KINDS[i % len(KINDS)] for i in range(cycles)]
    points = [pools[kind][i // len(KINDS) % len(pools[kind])] for i, kind in enumerate(kinds)]
    return [point if point.kind == "step" else replace(point, fraction=round(rng.random(), 3)) for point in points]


@dataclass
class Attempt:
    """One child process's training, as its user saw it."""

    exitcode: int | None
    fault: str | None  # where it killed itself, if it did
    status: str
    step: int | None
    message: str
    steps_logged: list[int]  # the steps of the metrics lines this attempt added
    newest_checkpoint: int  # the newest checkpoint folder on disk when it started (0: none)
    output: list[str]  # what it printed, less per-step progress and tracebacks' frames

    def started_from(self, plan: Plan) -> int | None:
        """The step it trained on from: 0 or a checkpoint's, the last before its first metrics line
        (further back than that line when a line was lost); None when it logged nothing."""
        if not self.steps_logged:
            return None
        return max(s for s in (0, *plan.saves()) if s < self.steps_logged[0])


@dataclass
class Cycle:
    index: int
    kill: KillPoint
    where: str
    attempts: list[Attempt] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    adapter: str = "not checked"
    happened: list[str] = field(default_factory=list)  # each attempt in a line
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def run(self) -> str:
        return f"cycle-{self.index:02d}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": not self.problems}


# --- in the child: the faults ---------------------------------------------------------------------

def _die(where: str) -> None:
    print(f"fault: SIGKILL {where}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class _KillInStep(TrainerCallback):
    """Dies in the forward pass of ``step``: after the batch is computed, before the weights change."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            model.register_forward_hook(lambda *_: _die(f"in the forward pass of step {self.step}"))


def _cut_file_writes(kill: KillPoint) -> None:
    """Wrap every writer a checkpoint uses: the chosen write of the chosen file is cut short, then death."""
    import peft.peft_model
    import safetensors.torch
    from transformers.trainer_callback import TrainerState

    seen = 0

    def wrap(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def write(*args: Any, **kwargs: Any) -> Any:
            nonlocal seen
            written = original(*args, **kwargs)
            path = args[1] if len(args) > 1 else next(iter(kwargs.values()), None)
            if isinstance(path, (str, os.PathLike)) and Path(path).name == kill.file:
                seen += 1
                if seen == kill.write:
                    os.truncate(path, int(Path(path).stat().st_size * kill.fraction))
                    _die(f"writing {Path(path).parent.name}/{kill.file}")
            return written

        setattr(owner, name, write)

    wrap(torch, "save")
    wrap(safetensors.torch, "save_file")
    wrap(peft.peft_model, "safe_save_file")  # peft's own name for safetensors' save_file
    wrap(TrainerState, "save_to_json")


def _cut_metrics_write(kill: KillPoint) -> None:
    """Wrap the run store's append: at the chosen step, what it appended loses its end, then death."""
    from jupyter_finetune.runs import Run

    original = Run.append_metrics

    def appended_in_place(folder: Path) -> dict[Path, tuple[int, int]]:
        return {p: (p.stat().st_ino, p.stat().st_size) for p in folder.iterdir() if p.is_file()}

    def append(run: Run, record: dict[str, Any]) -> None:
        before = appended_in_place(run.path)
        original(run, record)
        if record.get("step") != kill.step:
            return
        for path, (inode, size) in appended_in_place(run.path).items():
            if path in before and before[path][0] == inode and size - before[path][1] > 1:
                grown = size - before[path][1]
                os.truncate(path, before[path][1] + 1 + int((grown - 2) * kill.fraction))
        _die(f"writing the metrics of step {kill.step}")

    Run.append_metrics = append


def _attempt(log: Path, options: dict[str, Any], kill: KillPoint | None, data: dict[str, Any] | None) -> None:
    """The child: output to ``log``, the fault installed, then training as a user calls it."""
    torch.set_num_threads(1)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from jupyter_finetune import api

    callbacks = []
    if kill and kill.kind == "step":
        callbacks.append(_KillInStep(kill.step))
    elif kill and kill.kind == "save":
        _cut_file_writes(kill)
    elif kill and kill.kind == "metrics":
        _cut_metrics_write(kill)
    try:
        dataset = api.load_data(**data) if data else None
        result = api.train(dataset, callbacks=callbacks or None, **options)
        print(repr(result), result.message, sep="\n", flush=True)
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


# --- in the driver: cycles and judgement ----------------------------------------------------------

def _newest_checkpoint(folder: Path) -> int:
    """The step of the newest checkpoint folder a user would see in the run's folder, whole or not (0: none)."""
    from jupyter_finetune.runs import Run

    found = [int(p.name.rpartition("-")[2]) for p in Run(folder).checkpoints_dir.glob("checkpoint-*")
             if p.name.rpartition("-")[2].isdigit()]
    return max(found, default=0)


def _said(line: str) -> bool:
    """Not blank, a per-step progress line, the settings or a traceback's frames."""
    return bool(line.strip()) and not line.startswith(("  ", "Traceback")) and not NOISE.match(line)


def _run_attempt(ctx: Any, store: Any, name: str, log: Path, options: dict[str, Any], kill: KillPoint | None,
                 data: dict[str, Any] | None) -> Attempt:
    from jupyter_finetune.errors import NotFound

    newest = _newest_checkpoint(store.root / name)
    start = time.time()
    child = ctx.Process(target=_attempt, args=(log, options, kill, data))
    child.start()
    child.join(CHILD_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        with log.open("a") as f:
            f.write(f"harness: killed after hanging {CHILD_TIMEOUT_S} s\n")
    lines = log.read_text(errors="replace").splitlines()
    fault = next((line.partition("SIGKILL ")[2] for line in lines if line.startswith("fault: SIGKILL")), None)
    try:
        run = store.get(name)
        status, records = run.status(), run.metrics()
    except NotFound:
        status, records = {"status": "no run folder"}, []
    return Attempt(child.exitcode, fault, str(status.get("status")), status.get("step"), str(status.get("message", "")),
                   [r["step"] for r in records if r.get("loss") is not None and r.get("time", 0) >= start], newest,
                   [line[:300] for line in lines if _said(line)][-40:])


def _judge(cycle: Cycle, plan: Plan) -> None:
    """What a user would call wrong with the run, in their words."""
    attempts, last = cycle.attempts, cycle.attempts[-1]
    if attempts[0].fault is None:
        cycle.problems.append(f"the fault {cycle.where} never fired (exit {attempts[0].exitcode})")
    if last.status != "completed":
        error = next((line for line in reversed(last.output) if "Error" in line or "error" in line), last.message)
        stuck = " (the last two alike, so no more)" if _stuck(cycle) else ""
        cycle.problems.append(f"not completed after {len(attempts) - 1} resumes{stuck}: {last.status}; {error}")
    if last.step != plan.steps:
        cycle.problems.append(f"ends at step {last.step}, not {plan.steps}")
    if cycle.history != list(range(1, plan.steps + 1)):
        cycle.problems.append(f"its metrics history shows steps {cycle.history}, not 1 to {plan.steps} once each")
    for n, attempt in enumerate(attempts, 1):
        cycle.happened.append(_story(n, attempt, plan))
        if attempt.exitcode == -signal.SIGKILL and attempt.status != "interrupted":
            cycle.problems.append(f"attempt {n} was killed but its run reads {attempt.status!r}, not 'interrupted'")
        started, logged = attempt.started_from(plan), attempt.steps_logged
        if started is None:
            continue
        if logged != list(range(started + 1, started + 1 + len(logged))):
            cycle.problems.append(f"attempt {n} trained from step {started} but its metrics show steps {logged}: "
                                  "a record is lost")
        if n == 1:
            continue
        said, newest = "\n".join(attempt.output), attempt.newest_checkpoint
        if started < newest and f"checkpoint-{newest}" not in said:
            cycle.problems.append(f"attempt {n} trained from step {started} although checkpoint-{newest} "
                                  "was there, without naming it")
        if started == 0 and "step 0" not in said:
            cycle.problems.append(f"attempt {n} started again from step 0 without saying so")
    if cycle.adapter != "loads":
        cycle.problems.append(f"final adapter: {cycle.adapter}")


def _story(n: int, attempt: Attempt, plan: Plan) -> str:
    started = attempt.started_from(plan)
    trained = "logged no step" if started is None else f"trained from step {started}"
    if started is not None and started < attempt.newest_checkpoint:
        trained += f", passing over checkpoint-{attempt.newest_checkpoint}"
    ending = f"killed {attempt.fault}" if attempt.fault else f"ended {attempt.status} at step {attempt.step}"
    return f"attempt {n}: {trained}; {ending}" + (f" ({attempt.message})" if attempt.status == "failed" else "")


def _run_cycle(ctx: Any, index: int, kill: KillPoint, plan: Plan, folder: Path, model_dir: str) -> Cycle:
    from jupyter_finetune.runs import RunStore

    start = time.perf_counter()
    cycle = Cycle(index, kill, str(kill))
    store, name = RunStore.at(folder / "runs"), cycle.run
    data = {"name": "tickets", "source": _rows(plan.rows), "model": model_dir, "split": 0.0}
    fresh = {"name": name, "runs_dir": str(store.root), "steps": plan.steps, "save_steps": plan.save_steps,
             "batch_size": plan.batch_size}
    cycle.attempts.append(_run_attempt(ctx, store, name, folder / f"{name}-1.log", fresh, kill, data))
    resume = {"resume": name, "runs_dir": str(store.root)}
    while cycle.attempts[-1].status != "completed" and len(cycle.attempts) <= MAX_RESUMES and not _stuck(cycle):
        log = folder / f"{name}-{len(cycle.attempts) + 1}.log"
        cycle.attempts.append(_run_attempt(ctx, store, name, log, resume, None, None))
    cycle.history = [r["step"] for r in store.get(name).metrics() if r.get("loss") is not None]  # what curves show
    cycle.seconds = round(time.perf_counter() - start, 2)
    return cycle


def _stuck(cycle: Cycle) -> bool:
    """Two resumes in a row that ended alike, having trained nothing: the next ones would too."""
    if len(cycle.attempts) < 3:
        return False
    before, last = cycle.attempts[-2:]
    return not last.steps_logged and (before.status, before.step, before.message) == (last.status, last.step,
                                                                                       last.message)


def _rows(n: int) -> list[dict[str, Any]]:
    from helpers import good_rows

    return good_rows(n)


def _check_adapters(runs_dir: Path, names: list[str], out: Path) -> None:
    """The child: each run's final adapter on its base model, generating one token (a result per run)."""
    from peft import AutoPeftModelForCausalLM

    from jupyter_finetune.runs import RunStore

    torch.set_num_threads(1)
    results: dict[str, str] = {}
    for name in names:
        try:
            model = AutoPeftModelForCausalLM.from_pretrained(RunStore.at(runs_dir).get(name).trained_adapter())
            prompt = torch.tensor([[model.config.bos_token_id]])
            generated = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1,
                                       min_new_tokens=1, do_sample=False)
            results[name] = "loads" if generated.shape[1] == 2 else f"generated {generated.shape[1] - 1} tokens"
        except Exception as exc:
            results[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        out.write_text(json.dumps(results))


def _import_libraries() -> None:
    """What every child needs, imported once before the forks (no torch op runs here)."""
    import peft  # noqa: F401
    import trl  # noqa: F401
    from transformers import Trainer  # noqa: F401

    import jupyter_finetune.engine.job  # noqa: F401
    import jupyter_finetune.engine.prepare  # noqa: F401
    import jupyter_finetune.ui.training  # noqa: F401
    from peft import AutoPeftModelForCausalLM  # noqa: F401
    from trl import SFTTrainer  # noqa: F401


def _drive(model_dir: str, folder: Path, cycles: int, seed: int, plan: Plan, only: list[int] | None, out: Path) -> None:
    """The driver (spawned fresh): every cycle's attempts are forks of it; results to ``out``."""
    start = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _import_libraries()
    imports_s = time.perf_counter() - start
    ctx = multiprocessing.get_context("fork")
    done: list[Cycle] = []
    for index, kill in enumerate(kill_points(random.Random(seed), cycles, plan)):
        if only and index not in only:
            continue
        done.append(_run_cycle(ctx, index, kill, plan, folder, model_dir))
        print(f"cycle {index}: {done[-1].where}: {len(done[-1].attempts)} attempts, {done[-1].seconds} s", flush=True)
    adapters = folder / "adapters.json"
    checker = ctx.Process(target=_check_adapters, args=(folder / "runs", [c.run for c in done], adapters))
    checker.start()
    checker.join(CHILD_TIMEOUT_S)
    loaded = json.loads(adapters.read_text()) if adapters.exists() else {}
    for cycle in done:
        cycle.adapter = loaded.get(cycle.run, f"the check crashed (exit {checker.exitcode})")
        _judge(cycle, plan)
    out.write_text(json.dumps(_summary(done, seed, plan, imports_s, time.perf_counter() - start), indent=2))


def _summary(done: list[Cycle], seed: int, plan: Plan, imports_s: float, total_s: float) -> dict[str, Any]:
    by_kind = {kind: {"cycles": sum(c.kill.kind == kind for c in done),
                      "ok": sum(c.kill.kind == kind and not c.problems for c in done)} for kind in KINDS}
    return {"cycles": len(done), "ok": sum(not c.problems for c in done), "failed": sum(bool(c.problems) for c in done),
            "by_kind": by_kind, "seed": seed, "plan": asdict(plan), "max_resumes": MAX_RESUMES,
            "driver_imports_s": round(imports_s, 2), "total_s": round(total_s, 1),
            "s_per_cycle": round(sum(c.seconds for c in done) / max(len(done), 1), 2),
            "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU",
            "outcomes": [c.to_dict() for c in done]}


def run_faults(model_dir: Path, folder: Path, cycles: int = CYCLES, seed: int = SEED, plan: Plan = Plan(),
               only: list[int] | None = None) -> dict[str, Any]:
    """Run ``cycles`` fault cycles (or the ``only`` ones of them) on the tiny model in ``model_dir``,
    runs and logs under ``folder``."""
    out = folder / "faults.json"
    driver = multiprocessing.get_context("spawn").Process(
        target=_drive, args=(str(model_dir), folder, cycles, seed, plan, only, out))
    driver.start()
    driver.join()
    if driver.exitcode != 0:
        raise RuntimeError(f"the fault driver failed (exit {driver.exitcode}); its logs are in {folder}")
    return json.loads(out.read_text())


def main() -> None:
    from results_io import report

    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=CYCLES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", type=int, action="append", help="run only this cycle of the draw (repeatable)")
    parser.add_argument("--keep", type=Path, help="a folder to keep the runs and logs in (default: a temp folder)")
    args = parser.parse_args()
    from conftest import build_tokenizer, save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model_dir = save_tiny_model(folder / "tiny-llama", build_tokenizer())
        report(run_faults(model_dir, folder, args.cycles, args.seed, only=args.only), args.out)


if __name__ == "__main__":
    import bench_faults  # the children unpickle the driver's functions by this module's name

    bench_faults.main()
