"""One line per run, and runs side by side: read from the run store only, so any process can list them.

Nothing here loads a model; a run whose files are partly missing (queued, killed before its first
step) still gets a summary with what is there, and so does a damaged one (status ``damaged``, with
the file and the reason). The tables' text form is here (their ``repr``); the notebook's HTML form,
with the loss curves, is ui's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ..errors import InvalidValue, NotFound
from .damage import DamagedRun
from .store import Run, RunStore, unless_missing

T = TypeVar("T")

COLUMNS = ("run", "status", "model", "data", "preset", "length", "lr", "rank", "batch", "step", "best eval",
           "last train", "eval scores", "time")
"""The runs table's columns, in the text and the HTML form."""
KEY_SETTINGS = ("preset", "steps", "epochs", "lr", "rank", "batch_size")
"""The settings the runs table shows; a comparison shows them all."""
DAMAGED = "damaged"
REPAIR = "fix or delete the file, or train the run again with %ft_train ... --name RUN --overwrite"


@dataclass(frozen=True)
class RunSummary:
    """What the runs table shows about one run."""

    name: str
    status: str
    """As Run.status() says (a dead kernel's ``running`` reads ``interrupted``), or ``damaged``."""
    model: str
    data: str
    """Data set name and version (content hash), e.g. ``tickets v3f2a9c1d0b7e``."""
    settings: dict[str, Any]
    """``preset`` and every TrainConfig field, as saved with the run."""
    step: int
    max_steps: int | None
    best_eval_loss: float | None
    last_train_loss: float | None
    eval_scores: dict[str, float]
    """The fine-tuned system's scores in the newest saved evaluation; empty when never evaluated."""
    created: float
    """When training started (a queued run: when it was made); the table's order."""
    seconds: float | None
    """Wall time from start to the last status update, pauses before a resume included."""
    updated: float
    """When the status last changed (a step, a finish): how fresh the row is."""
    damage: str | None = None
    """Why the run is ``damaged``: the file and the reason (``status.json: step is "abc", not a whole number``)."""
    reward_accuracy: float | None = None
    """A preference run's final reward accuracy in training: on held-out pairs where it has them, else on
    the last train batch (None for other runs); the table shows it before the eval scores."""


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side: their summaries, loss records, and every setting with the differing ones named."""

    runs: list[RunSummary]
    curves: dict[str, list[dict[str, Any]]]
    """Run name -> its metrics records."""
    settings: dict[str, tuple[Any, ...]]
    """Setting -> its value in each run, in the order of ``runs``."""
    differing: tuple[str, ...]

    def __repr__(self) -> str:
        rows = [[("* " if key in self.differing else "  ") + key, *map(value_text, values)]
                for key, values in self.settings.items()]
        return (f"{RunTable(self.runs)!r}\n\nsettings that differ (*): {', '.join(self.differing) or 'none'}\n"
                f"{_text_table(['  setting', *(s.name for s in self.runs)], rows)}")


def damage_notes(summaries: Iterable[RunSummary]) -> list[str]:
    """A line per damaged run: its name, the file and the reason."""
    return [f"{s.name}: {s.damage}" for s in summaries if s.damage]


class RunTable(list):
    """RunSummary rows, newest first, that display as the runs table (a list in every other way)."""

    def __init__(self, rows: Iterable[RunSummary] = (), root: Path | None = None):
        super().__init__(rows)
        self.root = root
        """The run store they were read from."""

    def __repr__(self) -> str:
        if not self:
            return (f"no runs in {self.root} yet: train one with %ft_train (or point --runs-dir at your run "
                    "store)")
        notes = damage_notes(self)
        return _text_table(list(COLUMNS), [row_cells(s) for s in self]) + (
            f"\n\ndamaged runs ({REPAIR}):\n" + "\n".join(f"  {n}" for n in notes) if notes else "")


def summarize(run: Run) -> RunSummary:
    """The run's summary from its status, settings, data manifest, metrics and newest evaluation; a part not
    written yet shows as ``?``. A damaged file leaves its part out and makes the run ``damaged``."""
    found: list[DamagedRun] = []

    def part(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except NotFound:
            return None
        except DamagedRun as e:
            found.append(e)
            return None

    status = part(run.status) or {"status": "queued", "updated": run.path.stat().st_mtime}
    settings, manifest, losses = part(run.settings), part(run.manifest), part(run.losses)
    newest = part(lambda: next(run.evaluations(), None))
    started = status.get("started")
    return RunSummary(
        name=run.name, status=DAMAGED if found else status["status"], model=settings.model if settings else "?",
        data=f"{manifest.name} v{manifest.version}" if manifest else "? v?",
        settings={"preset": settings.preset if settings else None, **(settings.train if settings else {})},
        step=status.get("step") or 0, max_steps=status.get("max_steps"),
        best_eval_loss=losses.best_eval_loss if losses else None,
        last_train_loss=losses.last_train_loss if losses else None,
        eval_scores=newest.scores() if newest else {}, created=started or status.get("updated") or 0.0,
        seconds=status["updated"] - started if started and status.get("updated") else None,
        updated=status.get("updated") or 0.0, damage=found[0].damage if found else None,
        reward_accuracy=losses.reward_accuracy if losses else None,
    )


def summarize_all(runs: Iterable[Run]) -> RunTable:
    """These runs (a RunStore: all of it), newest first."""
    return RunTable(sorted((summarize(run) for run in runs), key=lambda s: (s.created, s.name), reverse=True),
                    runs.root if isinstance(runs, RunStore) else None)


def compare_runs(store: RunStore, names: Iterable[str]) -> RunComparison:
    """The named runs (unknown names raise, listing the known runs) with their settings lined up."""
    runs = [store.get(name) for name in dict.fromkeys(names)]
    if not runs:
        raise InvalidValue("name at least one run to compare (runs: "
                           f"{', '.join(r.name for r in store) or 'none yet'})")
    summaries = [summarize(run) for run in runs]
    curves = {run.name: unless_missing(run.metrics) or [] for run in runs}
    keys = ["data", *dict.fromkeys(k for s in summaries for k in s.settings)]
    settings = {k: tuple(s.data if k == "data" else s.settings.get(k) for s in summaries) for k in keys}
    differing = tuple(k for k, values in settings.items() if any(v != values[0] for v in values))
    return RunComparison(summaries, curves, settings, differing)


def value_text(value: Any) -> str:
    """A setting as a user would type it: ``3e-4``, ``all-linear,q_proj``, ``-`` for unset."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def duration(seconds: float | None) -> str:
    """``1m05s`` / ``2h03m``: short enough for a table cell or a progress line."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def row_cells(s: RunSummary) -> list[str]:
    """One run's cells, in COLUMNS order (shared by the text and the HTML table)."""
    steps, epochs = s.settings.get("steps"), s.settings.get("epochs")
    length = f"{steps} steps" if steps else (f"{epochs:g} epochs" if epochs is not None else "-")
    scores = ", ".join([*([f"reward acc {s.reward_accuracy:.2f}"] if s.reward_accuracy is not None else []),
                        *(f"{metric} {score:.2f}" for metric, score in s.eval_scores.items())])
    return [s.name, s.status, s.model, s.data, value_text(s.settings.get("preset")), length,
            value_text(s.settings.get("lr")), value_text(s.settings.get("rank")),
            value_text(s.settings.get("batch_size")), f"{s.step}/{value_text(s.max_steps)}",
            _loss(s.best_eval_loss), _loss(s.last_train_loss), scores or "-", duration(s.seconds)]


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])
