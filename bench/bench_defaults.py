"""Do the defaults learn as well as hand-set settings? Three small tasks, SmolLM2-135M, side by side.

For each task in bench/tasks/ (JSON extraction, a style rewrite, short facts learned from training
rows): the defaults (``%ft_train NAME`` with no flags: length from the data, validation, best adapter,
early stopping) against a grid of plain runs, learning rate {1e-4, 3e-4} x epochs {2, 6} at batch 8,
trained on every training row with no validation (as a hand-written TRL script trains). Each run's
held-out score is what ``%ft_eval`` reports (its own metric choice), and its time is the training
call's wall time. Targets: the defaults within 0.02 of the best grid point and within 1.5x its time.
Results are written after every run, so a bench cut short keeps what it measured.

    python bench/bench_defaults.py [--tasks facts,rewrite,extract] [--rows 125] [--runs DIR]
                                   [--out bench/results/defaults-cpu2.json] [--redo RUN,...]

``--redo facts-defaults`` trains and scores that run again and puts it in place of its entry in the
results already in ``--out`` (for a run whose time another process on the machine disturbed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from results_io import report  # noqa: E402

import jupyter_finetune as ft  # noqa: E402
from jupyter_finetune import api  # noqa: E402

TASKS = ("facts", "rewrite", "extract")
GRID = [{"lr": lr, "epochs": epochs} for lr in (1e-4, 3e-4) for epochs in (2, 6)]
SCORE_GAP = 0.02
TIME_RATIO = 1.5


def run_one(data, name: str, runs: Path, settings: dict) -> dict:
    """Train (quietly), then evaluate the fine-tuned model alone on the held-out rows."""
    job = api.prepare_training(data, name=name, runs_dir=runs, overwrite=True, **settings)
    start = time.perf_counter()
    result = job.train()
    seconds = time.perf_counter() - start
    evaluation = api.evaluate(name, against="none", runs_dir=runs)
    metric = evaluation.comparison.metrics[0]
    saved = job.run.settings()
    return {"name": name, "settings": settings or "defaults", "length": saved.length,
            "epochs": saved.train["epochs"], "steps": result.step, "status": result.status,
            "message": result.message, "train_s": round(seconds, 1), "metric": metric,
            "score": round(evaluation.comparison.systems["fine-tuned"].mean(metric), 4)}


def compare(runs: list[dict]) -> dict:
    """The defaults against the best grid point (the faster one on a tie)."""
    defaults = next(r for r in runs if r["settings"] == "defaults")
    grid = [r for r in runs if r["settings"] != "defaults"]
    best = max(grid, key=lambda r: (r["score"], -r["train_s"]))
    gap = round(best["score"] - defaults["score"], 4)
    ratio = round(defaults["train_s"] / best["train_s"], 2)
    return {"best_grid": best["name"], "score_gap": gap, "time_ratio": ratio,
            "within_score": gap <= SCORE_GAP, "within_time": ratio <= TIME_RATIO}


def table(result: dict) -> str:
    """The evidence as a markdown table (bench/results/defaults-cpu2.md)."""
    lines = ["| task | run | lr | epochs | steps | train s | held-out score |", "|---|---|---|---|---|---|---|"]
    for task, entry in result["tasks"].items():
        for r in entry["runs"]:
            lr = r["settings"]["lr"] if isinstance(r["settings"], dict) else "3e-4 (preset)"
            epochs = "-" if r["epochs"] is None else f"{r['epochs']:g}"
            lines.append(f"| {task} | {r['name']} | {lr} | {epochs} | {r['steps']} | {r['train_s']} | "
                         f"{r['metric']} {r['score']:.3f} |")
        if "vs_best" in entry:
            v = entry["vs_best"]
            lines.append(f"| {task} | defaults vs {v['best_grid']} | | | | x{v['time_ratio']} | "
                         f"gap {v['score_gap']:+.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--rows", type=int, default=125, help="Rows of each task file used (a fifth held out).")
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "defaults-cpu2.json")
    parser.add_argument("--redo", default="", help="Runs to measure again in the results already in --out.")
    args = parser.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="bench-defaults-"))
    redo = set(filter(None, args.redo.split(",")))
    result = json.loads(args.out.read_text()) if redo else {
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "model": "smollm2-135m",
        "grid": GRID, "targets": {"score_gap": SCORE_GAP, "time_ratio": TIME_RATIO}, "tasks": {}}
    for task in args.tasks.split(","):
        plans = [("defaults", {})] + [(f"lr{g['lr']:g}-ep{g['epochs']}", {**g, "batch_size": 8, "validation": 0.0})
                                      for g in GRID]
        if redo and not any(f"{task}-{label}" in redo for label, _ in plans):
            continue
        rows = [json.loads(line) for line in (ROOT / "bench" / "tasks" / f"{task}.jsonl").read_text().splitlines()]
        data = ft.api.load_data(task, rows[:args.rows], split=0.2)
        entry = result["tasks"].setdefault(task, {"train_rows": len(data.train), "test_rows": len(data.test), "runs": []})
        for i, (label, settings) in enumerate(plans):
            name = f"{task}-{label}"
            if redo and name not in redo:
                continue
            measured = run_one(data, name, runs, settings)
            if redo:
                entry["runs"][i] = {**measured, "redone": True}
            else:
                entry["runs"].append(measured)
            if len(entry["runs"]) == len(plans):
                entry["vs_best"] = compare(entry["runs"])
            report(result, args.out)
            args.out.with_suffix(".md").write_text(table(result))


if __name__ == "__main__":
    main()
