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
from typing import Any, Iterator, Literal

from ..errors import FinetuneError, InvalidValue, NotFound

Status = Literal["queued", "running", "completed", "stopped", "failed", "interrupted"]
ACTIVE = ("queued", "running")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RunExists(FinetuneError, FileExistsError):
    """Refused: a run of that name exists and --overwrite was not given."""


def runs_root(root: str | Path | None = None) -> Path:
    """An explicit root, else $JUPYTER_FINETUNE_RUNS (e.g. a mounted Drive folder), else ./ft_runs."""
    return Path(root or os.environ.get("JUPYTER_FINETUNE_RUNS") or "ft_runs").expanduser()


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
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
class Run:
    """One run's folder and the files in it."""

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

    def conversations(self, split: str | None = None) -> list[list[dict[str, str]]]:
        """The run's copy of its data (data.jsonl) as chat messages: one split, or all rows."""
        path = self.path / "data.jsonl"
        if not path.is_file():
            return []
        records = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return [r["messages"] for r in records if split is None or r.get("split", "train") == split]

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

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

    def write(self, filename: str, value: Any) -> None:
        write_json(self.path / filename, value)

    def read(self, filename: str, default: Any = None) -> Any:
        return read_json(self.path / filename, default)

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
        return cls(runs_root(root))

    def get(self, name: str) -> Run:
        path = self.root / check_name(name)
        if not (path / "status.json").exists():
            known = ", ".join(r.name for r in self) or "none yet"
            raise NotFound(f"no run named {name!r} in {self.root} (runs: {known})")
        return Run(path)

    def create(self, name: str | None = None, *, overwrite: bool = False, prefix: str = "run") -> Run:
        """A new run folder; without a name the next free ``prefix-N``. Never replaces without overwrite."""
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

