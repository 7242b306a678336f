"""The quickstart task end to end on a GPU through the magics: examples/colab_kaggle_gpu.ipynb executed in a real
kernel with the packaged SmolLM2 (nothing is downloaded) and QLoRA, the backend left to ``auto`` (unsloth where it
is installed and importable). Kept as JSON naming the GPU: the backend chosen and why, the training events the
dashboard drew (the run's metrics: steps, losses, tokens/s, memory), the run's status, the base-vs-tuned table
and the exported files. The executed notebook stays in the work folder, for its dashboard records.

    python bench/gpu_e2e.py [--steps 60] [--quant 4bit] [--eval-rows 24] [--work DIR] [--out FILE]
    python bench/gpu_e2e.py --smoke   # CPU: 2 steps, no 4-bit, 3 eval rows (the plumbing only)

The package need not be installed: the repo root is put on the kernel's path.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from demo import output_text  # noqa: E402
from results_io import report  # noqa: E402

from jupyter_finetune.runs import Run, RunStore  # noqa: E402
from jupyter_finetune.runs.store import unless_missing  # noqa: E402

NOTEBOOK = ROOT / "examples" / "colab_kaggle_gpu.ipynb"
RUN = "tickets-gpu"
"""The run name the notebook trains."""
EXECUTED = "colab_kaggle_gpu.out.ipynb"
"""Where, in the work folder, the executed notebook is kept."""


def parameters(a: argparse.Namespace) -> str:
    return (f'MODEL = "smollm2-135m"\nQUANT = "{a.quant}"\nDATA = None\nSTEPS = {a.steps}\nBATCH_SIZE = {a.batch_size}\n'
            f"LR = {a.lr}\nEVAL_ROWS = {a.eval_rows}")


def execute(a: argparse.Namespace) -> tuple[Any, float, str | None]:
    """The notebook with our parameters, run in a fresh kernel in ``a.work``; a failing cell ends the run but
    the cells before it are still reported."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    [cell] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = parameters(a)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    failed = None
    try:
        NotebookClient(notebook, timeout=a.timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(a.work)}}).execute()
    except Exception as e:  # noqa: BLE001 - any failure is part of the result
        failed = f"{type(e).__name__}: {str(e).strip()[-2000:]}"
    seconds = time.perf_counter() - start
    nbformat.write(notebook, a.work / EXECUTED)
    return notebook, seconds, failed


def cell_texts(notebook: Any) -> list[str]:
    return ["".join(output_text(o) for o in cell.get("outputs", [])) for cell in notebook.cells
            if cell.cell_type == "code"]


def training_record(run: Run) -> dict[str, Any] | None:
    """What the dashboard subscribed to, as the run store kept it; None before the first logged step."""
    records = run.metrics()
    if not records:
        return None
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    speeds = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
    settings = run.settings()
    return {"backend": settings.backend, "quant": settings.quant, "status": run.status(),
            "log_events": len(records), "eval_events": sum(r.get("eval_loss") is not None for r in records),
            "loss_first_last": [losses[0], losses[-1]] if losses else None,
            "tokens_per_s_median": sorted(speeds)[len(speeds) // 2] if speeds else None,
            "memory_gb_max": max((r.get("memory_gb") or 0 for r in records), default=None)}


def evaluation_record(run: Run) -> dict[str, Any] | None:
    """The saved %ft_eval of the run's own held-out rows (what the notebook evaluates)."""
    manifest = unless_missing(run.manifest)
    result = next((e for e in run.evaluations() if manifest and e.data_version == manifest.version), None)
    if result is None:
        return None
    return {"systems": {name: dict(s.scores) for name, s in result.systems.items()}, "verdict": result.verdict}


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--quant", default="4bit", choices=["4bit", "8bit", "none"])
    p.add_argument("--eval-rows", type=int, default=24)
    p.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    p.add_argument("--work", type=Path, default=Path("/tmp/ft-gpu-e2e"))
    p.add_argument("--out", type=Path, help="default: bench/results/gpu-e2e-<gpu>.json (not written by --smoke)")
    p.add_argument("--smoke", action="store_true", help="CPU: 2 steps, no 4-bit, 3 eval rows")
    a = p.parse_args()
    if a.smoke:
        a.steps, a.batch_size, a.lr, a.quant, a.eval_rows = 2, 4, 1e-3, "none", 3
    a.work.mkdir(parents=True, exist_ok=True)
    gpu = gpu_name()
    notebook, seconds, failed = execute(a)
    try:
        run = RunStore.at(a.work / "ft_runs").get(RUN)
    except FileNotFoundError:  # the notebook failed before training began
        run = None
    result = {
        "gpu": gpu, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"model": "smollm2-135m", "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr,
                     "quant": a.quant, "eval_rows": a.eval_rows},
        "notebook_seconds": round(seconds, 1), "failed": failed,
        "training": training_record(run) if run else None,
        "evaluation": evaluation_record(run) if run else None,
        "export": [{"kind": r.get("kind"), "quant": r.get("quant"), "files": [f["path"] for f in r.get("files", [])]}
                   for r in run.exports()] if run else [],
        "cells": cell_texts(notebook),
        "executed_notebook": str(a.work / EXECUTED),
    }
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    report(result, None if a.smoke else a.out or ROOT / "bench" / "results" / f"gpu-e2e-{slug}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
