"""The JSON each endpoint answers, built from the run store alone: plain functions, no HTTP.

Runs are looked up only inside the store's root: a name is checked by the store (no separators, no
``..``) and the folder it names must resolve inside the root, so a symlink cannot lead out of it;
within a run, runs/ reads no file that links out of it. The store the server passes in reads
through its CachedReader, so a poll costs what changed since the previous one.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..runs import Run, RunStore
from ..runs.store import ACTIVE, unless_missing
from ..runs.summary import RunSummary, summarize, summarize_all


def inside(root: Path, run: Run) -> bool:
    """Whether the run's folder is in the store's (resolved) root: a folder that is no link is."""
    return not os.path.islink(run.path) or run.path.resolve().is_relative_to(root)


def open_run(store: RunStore, name: str) -> Run:
    """The run of that name; ValueError for a malformed name, FileNotFoundError for one not in the store."""
    run = store.get(name)
    if not inside(store.root, run):
        raise FileNotFoundError(f"no run named {name!r} inside the run store")
    return run


def runs_list(store: RunStore) -> dict[str, Any]:
    """Every run inside the store, newest first (a damaged one with its ``damage``)."""
    runs = [run for run in store if inside(store.root, run)]
    store.reader.retain(run.path for run in runs)
    return {"runs": [summary_row(s) for s in summarize_all(runs)]}


def summary_row(summary: RunSummary) -> dict[str, Any]:
    progress = min(1.0, summary.step / summary.max_steps) if summary.max_steps else None
    return {**{f.name: getattr(summary, f.name) for f in fields(summary)}, "progress": progress}


def run_detail(run: Run) -> dict[str, Any]:
    """The run's row plus its saved settings, data manifest and evaluation summaries (scores and verdict,
    not every answer given), newest first."""
    settings, manifest = unless_missing(run.settings), unless_missing(run.manifest)
    return {**summary_row(summarize(run)), "config": settings.to_dict() if settings else {},
            "data_summary": manifest.to_dict() if manifest else {},
            "evals": [{**e.to_dict(), "updated": e.updated} for e in unless_missing(lambda: list(run.evaluations()))
                      or []]}


def run_metrics(run: Run, after: int, attempt: int | None = None) -> dict[str, Any]:
    """Records with step > after (all of a newer attempt than ``attempt``), and the status read first: once it
    is final, no record can be missing. On a long run a poller far behind gets the older part thinned
    (``thinned``: true); a damaged run's answer names its ``damage`` and holds the records before it."""
    summary = summarize(run)
    page = run.metrics_page(after, attempt)
    return {"name": run.name, "status": summary.status, "active": summary.status in ACTIVE, "step": summary.step,
            "max_steps": summary.max_steps, "metrics": page.records, "thinned": page.thinned,
            "attempt": page.attempt, "damage": summary.damage}


def finite(value: Any) -> Any:
    """NaN and infinite losses (a diverged run) as null: browsers' JSON.parse refuses NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
