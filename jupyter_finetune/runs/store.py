"""The run store on disk, ``ft_runs/<name>/``: the one source of truth for every run.

Every JSON file is written atomically (temp file + rename), and ``metrics.jsonl`` is appended and
flushed at every log step, so a killed kernel leaves readable files behind. A run whose status
says ``running`` but whose process is gone is reported as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, TypeVar

from ..errors import FinetuneError, InvalidValue, NotFound, PathProblem, reworded
from .records import DataManifest, EvalSummary, RunSettings

Status = Literal["queued", "running", "completed", "stopped", "failed", "interrupted"]
ACTIVE = ("queued", "running")
T = TypeVar("T")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ROOT_OPTION = "--runs-dir, or $JUPYTER_FINETUNE_RUNS"
"""Where a user chooses another run store."""


class RunExists(FinetuneError, FileExistsError):
    """Refused: a run of that name exists and --overwrite was not given."""


def runs_root(root: str | Path | None = None) -> Path:
    """An explicit root, else $JUPYTER_FINETUNE_RUNS (e.g. a mounted Drive folder), else ./ft_runs."""
    return Path(root or os.environ.get("JUPYTER_FINETUNE_RUNS") or "ft_runs").expanduser()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidValue(f"run name {name!r}: use letters, digits, '.', '_' or '-' (at most 100), "
                           "starting with a letter or digit")
    return name


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file + rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, default=str))


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def unless_missing(read: Callable[[], T]) -> T | None:
    """A record of a run still being set up (or whose file is unreadable) as None, for listings."""
    try:
        return read()
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class DataRow:
    """One row of a run's copy of its data: the conversation, its split and its row in the source."""

    row: int
    split: str
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Run:
    """One run's folder; the only code that knows the files in it and their keys.

    Others ask it for typed records (``settings``, ``manifest``, ``data_rows``, ``evaluations``)
    and hand it records to keep (``begin``, ``save_evaluation``, ``record_export``).
    """

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    def trained_adapter(self) -> Path:
        """The adapter folder, or an error saying how to get one (evaluation and chat need it)."""
        if not (self.adapter_dir / "adapter_config.json").exists():
            raise NotFound(f"run {self.name!r} has no adapter yet (status {self.status()['status']}): "
                           f"finish it with %ft_train --resume {self.name}, or if it is training, "
                           f"%ft_stop {self.name} saves the adapter so far")
        return self.adapter_dir

    def begin(self, settings: RunSettings, manifest: DataManifest, data_jsonl: str) -> None:
        """Keep what a new run trains with: its settings, its data's manifest and a copy of the data."""
        write_json(self.path / "config.json", settings.to_dict())
        write_json(self.path / "data.json", manifest.to_dict())
        write_text_atomic(self.path / "data.jsonl", data_jsonl)

    def settings(self) -> RunSettings:
        saved = read_json(self.path / "config.json")
        if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict):
            raise NotFound(f"run {self.name!r} has no readable settings ({self.path / 'config.json'})")
        return RunSettings.from_dict(saved)

    def manifest(self) -> DataManifest:
        saved = read_json(self.path / "data.json")
        if not isinstance(saved, dict):
            raise NotFound(f"run {self.name!r} has no readable data manifest ({self.path / 'data.json'})")
        return DataManifest.from_dict(saved)

    def data_rows(self) -> list[DataRow]:
        """The run's copy of its data, train rows then test rows ([] before it was written)."""
        path = self.path / "data.jsonl"
        if not path.is_file():
            return []
        records = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return [DataRow(r.get("row", i), r.get("split", "train"), r["messages"]) for i, r in enumerate(records)]

    def conversations(self, split: str | None = None) -> list[list[dict[str, str]]]:
        """The run's copy of its data as chat messages: one split, or all rows."""
        return [r.messages for r in self.data_rows() if split is None or r.split == split]

    def write_error(self, text: str) -> None:
        """The traceback of a failed run, kept beside its status for whoever debugs it."""
        write_text_atomic(self.path / "error.txt", text)

    def evaluation_file(self, data_version: str) -> Path:
        return self.path / "eval" / f"{data_version}.json"

    def save_evaluation(self, summary: EvalSummary, details: dict[str, Any]) -> Path:
        """One file per data version: the summary (scores, verdict) and the evaluation's own details."""
        path = self.evaluation_file(summary.data_version)
        path.parent.mkdir(exist_ok=True)
        write_json(path, {**details, **summary.to_dict()})
        return path

    def evaluation_details(self, data_version: str) -> dict[str, Any] | None:
        """What ``save_evaluation`` kept beside the summary (the answers...), or None."""
        saved = read_json(self.evaluation_file(data_version))
        if not isinstance(saved, dict):
            return None
        return {k: v for k, v in saved.items() if k not in EvalSummary.KEYS}

    def evaluations(self) -> Iterator[EvalSummary]:
        """Every saved evaluation's summary, newest first, each read only when asked for (a listing wants
        just the newest); a file in another shape is skipped."""
        files = sorted((p.stat().st_mtime, p) for p in (self.path / "eval").glob("*.json"))
        for mtime, path in reversed(files):
            try:
                yield EvalSummary.from_dict(read_json(path), mtime)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue

    def export_dir(self, kind: str) -> Path:
        """Where an export of this kind goes when no other folder is given."""
        return self.path / "export" / kind

    def record_export(self, record: dict[str, Any]) -> None:
        """Add an export's record, replacing an older one of the same path."""
        path = self.path / "export" / "exports.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in self.exports() if r.get("path") != record.get("path")]
        write_json(path, [*kept, record])

    def exports(self) -> list[dict[str, Any]]:
        """The run's export records, oldest first."""
        saved = read_json(self.path / "export" / "exports.json", [])
        return [r for r in saved if isinstance(r, dict)] if isinstance(saved, list) else []

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def last_checkpoint(self) -> Path | None:
        found = [p for p in self.checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
        return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None

    def status(self) -> dict[str, Any]:
        """status.json, with a dead process's ``running`` shown as ``interrupted``."""
        status = read_json(self.path / "status.json", {"status": "queued"})
        if status.get("status") in ACTIVE and not _alive(status.get("pid")):
            status = {**status, "status": "interrupted"}
        return status

    def set_status(self, status: Status, **fields: Any) -> None:
        now = time.time()
        current = read_json(self.path / "status.json", {})
        current.update(fields, status=status, updated=now, pid=os.getpid())
        if status == "running":
            current.setdefault("started", now)
        if status not in ACTIVE:
            current["finished"] = now
        write_json(self.path / "status.json", current)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()

    def metrics(self, after_step: int = -1) -> list[dict[str, Any]]:
        """Every complete metrics line with step > after_step (a half-written last line is skipped)."""
        out = []
        try:
            lines = (self.path / "metrics.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step", -1) > after_step:
                out.append(record)
        return out


@dataclass(frozen=True)
class RunStore:
    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> "RunStore":
        """The store at ``root`` (see ``runs_root``); a file there is refused rather than listed as no runs."""
        path = runs_root(root)
        if path.exists() and not path.is_dir():
            raise PathProblem(f"{path}: a file, not a folder — point the run store at a folder ({_ROOT_OPTION})")
        return cls(path)

    def get(self, name: str) -> Run:
        path = self.root / check_name(name)
        if not (path / "status.json").exists():
            known = ", ".join(r.name for r in self) or "none yet"
            raise NotFound(f"no run named {name!r} in {self.root} (runs: {known})")
        return Run(path)

    def create(self, name: str | None = None, *, overwrite: bool = False, prefix: str = "run") -> Run:
        """A new run folder; without a name the next free ``prefix-N``. Never replaces without overwrite."""
        with reworded(self.root, "cannot create a run in this run store", _ROOT_OPTION):
            return self._create(name, overwrite, prefix)

    def _create(self, name: str | None, overwrite: bool, prefix: str) -> Run:
        self.root.mkdir(parents=True, exist_ok=True)
        if name is None:
            n = 1 + max((int(m.group(1)) for r in self if (m := re.fullmatch(rf"{re.escape(prefix)}-(\d+)", r.name))),
                        default=0)
            name = f"{prefix}-{n}"
        path = self.root / check_name(name)
        if path.exists():
            if not overwrite:
                raise RunExists(f"run {name!r} already exists in {self.root}: pass --overwrite to replace it, "
                                f"--resume {name} to continue it, or choose another --name")
            if Run(path).status().get("status") == "running":
                raise RunExists(f"run {name!r} is still training (pid {Run(path).status().get('pid')}); stop it first")
            shutil.rmtree(path)
        path.mkdir(parents=True)
        run = Run(path)
        run.set_status("queued")
        return run

    def __iter__(self) -> Iterator[Run]:
        if not self.root.is_dir():
            return iter(())
        return iter(sorted((Run(p) for p in self.root.iterdir() if (p / "status.json").exists()),
                           key=lambda r: r.name))

