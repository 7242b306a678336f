"""The JSON each endpoint answers, built from the run store alone: plain functions, no HTTP.

Runs are looked up only inside the store's root: a name is checked by the store (no separators, no
``..``) and the folder it names must resolve inside the root, so a symlink cannot lead out of it.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..runs import Run, RunStore
from ..runs.store import ACTIVE, unless_missing
from ..runs.summary import RunSummary, summarize, summarize_all


def inside(root: Path, run: Run) -> bool:
    return run.path.resolve().is_relative_to(root)


def open_run(root: Path, name: str) -> Run:
    """The run of that name; ValueError for a malformed name, FileNotFoundError for one not in the store."""
    run = RunStore(root).get(name)
    if not inside(root, run):
        raise FileNotFoundError(f"no run named {name!r} inside the run store")
    return run


def runs_list(root: Path) -> dict[str, Any]:
    """Every run inside the store, newest first."""
    return {"runs": [summary_row(s) for s in summarize_all(run for run in RunStore(root) if inside(root, run))]}


def summary_row(summary: RunSummary) -> dict[str, Any]:
    progress = min(1.0, summary.step / summary.max_steps) if summary.max_steps else None
    return {**asdict(summary), "progress": progress}


def run_detail(run: Run) -> dict[str, Any]:
    """The run's row plus its saved settings, data manifest and evaluation summaries (scores and verdict,
    not every answer given), newest first."""
    settings, manifest = unless_missing(run.settings), unless_missing(run.manifest)
    return {**summary_row(summarize(run)), "config": settings.to_dict() if settings else {},
            "data_summary": manifest.to_dict() if manifest else {},
            "evals": [{**e.to_dict(), "updated": e.updated} for e in run.evaluations()]}


def run_metrics(run: Run, after: int) -> dict[str, Any]:
    """Records with step > after, and the status read first: once it is final, no record can be missing."""
    status = run.status()
    state = status.get("status", "queued")
    return {"name": run.name, "status": state, "active": state in ACTIVE, "step": status.get("step", 0),
            "max_steps": status.get("max_steps"), "metrics": run.metrics(after_step=after)}


def finite(value: Any) -> Any:
    """NaN and infinite losses (a diverged run) as null: browsers' JSON.parse refuses NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
