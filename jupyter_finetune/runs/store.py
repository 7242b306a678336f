"""The run store on disk, ``ft_runs/<name>/``: the one source of truth for every run.

A run folder holds ``config.json``, ``data.json`` and ``data.jsonl``, ``status.json``, ``metrics.jsonl``,
``adapter/`` (the best-scoring adapter when validation chose it, with ``kept.json``; else the last),
``last-adapter/`` (the last one, when it is not the kept one), ``checkpoints/``, ``eval/`` (a summary with the
answers per data version, and ``history.jsonl``: every completed evaluation) and ``export/``. A run on
several processes also has ``accelerate.json`` (how they were launched), ``workers.log`` (what they printed),
``stop-request`` while they are asked to stop, and ``worker-N.error`` for a worker that failed.

Every JSON file is written atomically (temp file + rename), and ``metrics.jsonl`` is appended and
flushed at every log step (``eval/history.jsonl`` at every evaluation), so a killed kernel leaves readable
files behind. A run whose status says ``running`` but whose process is gone is reported as ``interrupted``.
Reading is total: a file in the wrong shape, or one that links out of the run, raises DamagedRun naming the
file and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, TypeVar, get_args

from ..errors import FinetuneError, InvalidValue, NotFound, PathProblem, reworded
from .checkpoints import STATE, ResumePoint, resume_point
from .damage import LIST, NUMBER, OBJECT, TEXT, WHOLE, DamagedRun, Malformed, check, shown, whole_file
from .damage import field as checked
from .files import LeadsOutside, parse_json, stat_inside, unreadable
from .history import Losses, Page
from .metrics_log import MetricsLog
from .liveness import Trainer, still_training
from .readers import TAIL, FileReader
from .records import DataManifest, EvalRecord, EvalSummary, KeptAdapter, RunSettings, utc_now

Status = Literal["queued", "running", "completed", "stopped", "failed", "interrupted"]
STATUSES = get_args(Status)
ACTIVE = ("queued", "running")
T = TypeVar("T")
STATUS_FIELDS = {"status": TEXT, "step": WHOLE, "max_steps": WHOLE, "pid": WHOLE, "updated": NUMBER,
                 "started": NUMBER, "finished": NUMBER, "message": TEXT, "attempt": WHOLE, "host": TEXT,
                 "boot_id": TEXT, "proc_start": NUMBER, "heartbeat": NUMBER}
"""status.json's keys and their types; keys not named here are kept as they are."""
FILES = FileReader()
_KEPT = "kept.json"
"""Inside ``adapter/``: the validation score that chose it (absent when no validation did)."""
_EVAL_HISTORY = "eval/history.jsonl"
"""Every completed evaluation, one EvalRecord a line, appended: a re-evaluation replaces its summary, not this."""
_STOP = "stop-request"
"""Present while the run's workers are asked to stop (the kernel cannot signal a step end across processes)."""
_WORKER_ERROR = "worker-{rank}.error"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ROOT_OPTION = "--runs-dir, or $JUPYTER_FINETUNE_RUNS"
"""Where a user chooses another run store."""


class RunExists(FinetuneError, FileExistsError):
    """Refused: a run of that name exists and --overwrite was not given."""


def holds_adapter(folder: Path) -> bool:
    """Whether ``folder`` holds a saved PEFT adapter (PEFT writes adapter_config.json beside the weights)."""
    return (folder / "adapter_config.json").is_file()


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
    """A record of a run still being set up, or damaged, as None: for a view beside the run's summary, which
    names the damage."""
    try:
        return read()
    except (NotFound, DamagedRun):
        return None


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """One JSON line at the end of a log, flushed: a kill leaves at most that line torn."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=float) + "\n")
        f.flush()


def _cut_torn_line(path: Path, chunk: int = 1 << 16) -> None:
    """Cut a last line that has no end (a write killed midway), reading only the file's tail."""
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - chunk)
            f.seek(start)
            newline = f.read(position - start).rfind(b"\n")
            if newline >= 0:
                if start + newline + 1 < end:
                    f.truncate(start + newline + 1)
                return
            position = start
        f.truncate(0)


def parse_status(saved: Any) -> dict[str, Any]:
    status = dict(whole_file(saved))
    for key, kind in STATUS_FIELDS.items():
        checked(status, key, kind)
    if status.setdefault("status", "queued") not in STATUSES:
        raise Malformed(f"status is {shown(status['status'])}, not one of {', '.join(STATUSES)}")
    return status


def parse_rows(saved: Any) -> dict[str, Any]:
    row = whole_file(saved)
    messages = checked(row, "messages", LIST, required=True)
    for message in messages:
        check(message, OBJECT, "a message")
    checked(row, "row", WHOLE)
    checked(row, "split", TEXT)
    checked(row, "rejected", TEXT)
    return row


def _history_record(line: bytes) -> EvalRecord | None:
    """One line of the evaluation history; None for a line in another shape (torn by a kill, edited), which
    the history skips."""
    try:
        return EvalRecord.from_dict(parse_json(line))
    except (Malformed, KeyError, TypeError, ValueError, AttributeError):
        return None


def _evaluation(saved: Any) -> EvalSummary | None:
    """An evaluation's summary; None for a file in another shape (not one %ft_eval wrote), which listings skip."""
    try:
        return EvalSummary.from_dict(saved)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _export_records(saved: Any) -> list[dict[str, Any]]:
    return [r for r in saved if isinstance(r, dict)] if isinstance(saved, list) else []


@dataclass(frozen=True)
class DataRow:
    """One row of a run's copy of its data: the conversation, its split and its row in the source."""

    row: int
    split: str
    messages: list[dict[str, str]]
    rejected: str | None = None
    """A preference pair's rejected answer (data.preference)."""


@dataclass(frozen=True)
class Run:
    """One run's folder; the only code that knows the files in it and their keys.

    Others ask it for typed records (``settings``, ``manifest``, ``data_rows``, ``evaluations``)
    and hand it records to keep (``begin``, ``save_evaluation``, ``record_export``).
    """

    path: Path
    reader: FileReader = field(default=FILES, compare=False, repr=False)
    """How its files are read: afresh, or (the server's) kept between polls."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def adapter_dir(self) -> Path:
        """The run's adapter: the best-scoring one when it was validated during training, else the last."""
        return self.path / "adapter"

    @property
    def last_adapter_dir(self) -> Path:
        """The adapter of the last step, kept beside ``adapter/`` when a better-scoring one was kept there."""
        return self.path / "last-adapter"

    def keep_best_adapter(self, save: Callable[[Path], None], kept: KeptAdapter) -> None:
        """``save`` writes the adapter into a fresh folder that then replaces ``adapter/`` together with its
        record, so a kill part way leaves the previous best whole."""
        self._replace_folder(self.adapter_dir, save, lambda folder: write_json(folder / _KEPT, kept.to_dict()))

    def keep_last_adapter(self, save: Callable[[Path], None]) -> None:
        self._replace_folder(self.last_adapter_dir, save)

    def drop_last_adapter(self) -> None:
        """No separate last adapter: the kept one is the last (or the run was trained again)."""
        shutil.rmtree(self.last_adapter_dir, ignore_errors=True)

    def kept_adapter(self) -> KeptAdapter | None:
        """The validation record of ``adapter/`` (None: it was not chosen by validation)."""
        return self._lenient(f"adapter/{_KEPT}", KeptAdapter.from_dict)

    def _replace_folder(self, folder: Path, save: Callable[[Path], None],
                        finish: Callable[[Path], None] = lambda folder: None) -> None:
        fresh, old = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
        for leftover in (fresh, old):
            shutil.rmtree(leftover, ignore_errors=True)
        save(fresh)
        finish(fresh)
        if folder.exists():
            folder.rename(old)
        fresh.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    def adapter_hash(self) -> str:
        """The adapter's weights by content (sha256 of the ``adapter_model.*`` files, 12 hex digits): a copied
        run keeps it, a retrained adapter changes it ("" without weights)."""
        weights = sorted(self.adapter_dir.glob("adapter_model.*"))
        if not weights:
            return ""
        digest = hashlib.sha256()
        for path in weights:
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
        return digest.hexdigest()[:12]

    def trained_adapter(self) -> Path:
        """The adapter folder, or an error saying how to get one (evaluation and chat need it)."""
        if not holds_adapter(self.adapter_dir):
            raise NotFound(f"run {self.name!r} has no adapter yet (status {self.status()['status']}): "
                           f"finish it with %ft_train --resume {self.name}, or if it is training, "
                           f"%ft_stop {self.name} saves the adapter so far")
        return self.adapter_dir

    def begin(self, settings: RunSettings, manifest: DataManifest, data_jsonl: str) -> None:
        """Keep what a new run trains with: its settings, its data's manifest and a copy of the data."""
        write_json(self.path / "config.json", settings.to_dict())
        write_json(self.path / "data.json", manifest.to_dict())
        write_text_atomic(self.path / "data.jsonl", data_jsonl)

    @property
    def start_adapter_dir(self) -> Path:
        """The copy of the adapter this run started from (``--from``): training, resumes and the reference of
        a preference run read it here, whatever later happens to the run it came from."""
        return self.path / "start-adapter"

    def keep_start_adapter(self, adapter: Path) -> None:
        """Copy the adapter this run starts from into it, whole or not at all."""
        self._replace_folder(self.start_adapter_dir, lambda folder: shutil.copytree(adapter, folder,
                                                                                    dirs_exist_ok=True))

    def start_adapter(self) -> Path | None:
        return self.start_adapter_dir if holds_adapter(self.start_adapter_dir) else None

    def change_settings(self, settings: RunSettings) -> None:
        """A resume on another number of processes: the run is from now on set up as ``settings`` say."""
        write_json(self.path / "config.json", settings.to_dict())

    def _load(self, name: str, parse: Callable[[Any], T], missing: str) -> T:
        found = self.reader.load(self.path, name, parse)
        if found is None:
            raise NotFound(f"run {self.name!r} has no {missing} yet ({self.path / name})")
        return found

    def settings(self) -> RunSettings:
        return self._load("config.json", RunSettings.from_dict, "settings")

    def manifest(self) -> DataManifest:
        return self._load("data.json", DataManifest.from_dict, "data manifest")

    def data_rows(self) -> list[DataRow]:
        """The run's copy of its data, train rows then test rows ([] before it was written)."""
        name = "data.jsonl"
        if stat_inside(self.path, name) is None:
            return []
        rows = []
        for number, line in enumerate((self.path / name).read_bytes().splitlines(), 1):
            if line.strip():
                try:
                    r = parse_rows(parse_json(line))
                except Malformed as e:
                    raise DamagedRun(self.path, name, e.reason, number) from None
                rows.append(DataRow(r.get("row", len(rows)), r.get("split", "train"), r["messages"],
                                    r.get("rejected")))
        return rows

    def conversations(self, split: str | None = None) -> list[list[dict[str, str]]]:
        """The run's copy of its data as chat messages: one split, or all rows."""
        return [r.messages for r in self.data_rows() if split is None or r.split == split]

    def write_error(self, text: str) -> None:
        """The traceback of a failed run, kept beside its status for whoever debugs it."""
        write_text_atomic(self.path / "error.txt", text)

    @property
    def launch_config_file(self) -> Path:
        """accelerate's config for this run's data-parallel workers (engine.launch)."""
        return self.path / "accelerate.json"

    @property
    def workers_log(self) -> Path:
        """What the launcher and its workers printed: the place to look when a worker died without a word."""
        return self.path / "workers.log"

    def request_stop(self) -> None:
        """Asks the run's worker processes (another process group, maybe another machine) to stop at the next step."""
        write_text_atomic(self.path / _STOP, f"{time.time()}\n")

    def stop_requested(self) -> bool:
        return (self.path / _STOP).exists()

    def clear_worker_records(self) -> None:
        """A new launch: no stop request or worker failures of an earlier one."""
        (self.path / _STOP).unlink(missing_ok=True)
        for old in self.path.glob(_WORKER_ERROR.format(rank="*")):
            old.unlink()

    def write_worker_error(self, rank: int, message: str, text: str) -> None:
        """Why worker ``rank`` failed: its one-line message, then its traceback."""
        write_text_atomic(self.path / _WORKER_ERROR.format(rank=rank), f"{message}\n{text}")

    def worker_errors(self) -> dict[int, str]:
        """Each failed worker's one-line message, by rank, oldest failure first."""
        found = sorted(self.path.glob(_WORKER_ERROR.format(rank="*")), key=lambda path: path.stat().st_mtime)
        return {int(path.stem.rpartition("-")[2]): path.read_text(errors="replace").partition("\n")[0]
                for path in found}

    def evaluation_file(self, data_version: str) -> Path:
        return self.path / f"eval/{data_version}.json"

    def save_evaluation(self, summary: EvalSummary, details: dict[str, Any], data: str = "") -> Path:
        """One file per data version: the summary (scores, verdict) and the evaluation's own details; and one
        more record in the evaluation history, of data set ``data``. Dated now unless the summary is."""
        summary = summary if summary.date else replace(summary, date=utc_now())
        path = self.evaluation_file(summary.data_version)
        path.parent.mkdir(exist_ok=True)
        write_json(path, {**details, **summary.to_dict()})
        self._partial_file(summary.data_version).unlink(missing_ok=True)
        self._append_history(EvalRecord.of(summary, data))
        return path

    def _append_history(self, record: EvalRecord) -> None:
        """A line cut by a kill is cut off first, so the new record starts a line of its own."""
        path = self.path / _EVAL_HISTORY
        if path.is_file():
            _cut_torn_line(path)
        _append_line(path, record.to_dict())

    def evaluation_history(self) -> list[EvalRecord]:
        """Every completed evaluation, oldest first; lines in another shape (a torn last line) are skipped."""
        if stat_inside(self.path, _EVAL_HISTORY) is None:
            return []
        try:
            lines = (self.path / _EVAL_HISTORY).read_bytes().splitlines()
        except OSError as e:
            raise unreadable(self.path, _EVAL_HISTORY, e) from None
        return [record for line in lines if line.strip() and (record := _history_record(line)) is not None]

    def _partial_file(self, data_version: str) -> Path:
        return self.path / f"eval/partial/{data_version}.json"

    def save_partial_evaluation(self, data_version: str, details: dict[str, Any]) -> Path:
        """Answers of an evaluation that stopped part way (out of memory), kept until it completes; not
        an evaluation in listings (it has no scores)."""
        path = self._partial_file(data_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, details)
        return path

    def partial_evaluation(self, data_version: str) -> dict[str, Any] | None:
        """What ``save_partial_evaluation`` kept, or None."""
        return self._lenient(f"eval/partial/{data_version}.json", whole_file)

    def _lenient(self, name: str, parse: Callable[[Any], T]) -> T | None:
        """A file that is not what this version writes there as None (it is written again when needed); one
        that leads out of the run still raises."""
        try:
            return self.reader.load(self.path, name, parse)
        except LeadsOutside:
            raise
        except DamagedRun:
            return None

    def evaluation_details(self, data_version: str) -> dict[str, Any] | None:
        """What ``save_evaluation`` kept beside the summary (the answers...), or None."""
        saved = self._lenient(f"eval/{data_version}.json", whole_file)
        return None if saved is None else {k: v for k, v in saved.items() if k not in EvalSummary.KEYS}

    def evaluations(self) -> Iterator[EvalSummary]:
        """Every saved evaluation's summary, newest first, each read only when asked for (a listing wants
        just the newest); a file in another shape is skipped."""
        names = [f"eval/{p.name}" for p in (self.path / "eval").glob("*.json")]
        files = sorted((found.st_mtime, name) for name in names if (found := stat_inside(self.path, name)))
        for mtime, name in reversed(files):
            summary = self._lenient(name, _evaluation)
            if summary is not None:
                yield replace(summary, updated=mtime)

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
        return self._lenient("export/exports.json", _export_records) or []

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def last_checkpoint(self) -> Path | None:
        """The newest whole checkpoint (one cut by a kill is passed over)."""
        return resume_point(self.checkpoints_dir).checkpoint

    def resume_point(self) -> ResumePoint:
        """Where ``--resume`` starts; the newer checkpoints that are not whole are removed, so that
        neither this resume nor the Trainer's rotation of old checkpoints takes them for whole ones."""
        point = resume_point(self.checkpoints_dir)
        for name, _ in point.skipped:
            shutil.rmtree(self.checkpoints_dir / name, ignore_errors=True)
        return point

    def adopt_adapter(self, checkpoint: Path, last: bool = False) -> None:
        """The adapter as ``save_model`` wrote it into ``checkpoint``, kept as the run's adapter (``last``:
        as the last adapter, beside a better-scoring one)."""
        def copy(folder: Path) -> None:
            folder.mkdir()
            for path in checkpoint.iterdir():
                if path.is_file() and not STATE.fullmatch(path.name):
                    shutil.copy2(path, folder / path.name)

        self._replace_folder(self.last_adapter_dir if last else self.adapter_dir, copy)

    def status(self) -> dict[str, Any]:
        """status.json, checked, with an active status whose trainer is gone (killed, or on a VM since
        restarted) shown as ``interrupted``."""
        status = dict(self.reader.load(self.path, "status.json", parse_status) or {"status": "queued"})
        if status["status"] in ACTIVE and not still_training(status):
            status["status"] = "interrupted"
        return status

    def set_status(self, status: Status, **fields: Any) -> None:
        """Also records who writes it (liveness.Trainer) and when, the heartbeat that readers check."""
        now = time.time()
        current = read_json(self.path / "status.json", {})
        current = current if isinstance(current, dict) else {}
        current.update(fields, **Trainer.current().fields(), status=status, updated=now, heartbeat=now)
        if status == "running":
            current.setdefault("started", now)
        if status not in ACTIVE:
            current["finished"] = now
        write_json(self.path / "status.json", current)

    def beat(self) -> None:
        """The heartbeat of a training process between log steps (loading a model, a long step, an evaluation)."""
        current = read_json(self.path / "status.json", {})
        if isinstance(current, dict) and current.get("status") in ACTIVE:
            write_json(self.path / "status.json", {**current, "heartbeat": time.time()})

    def begin_attempt(self) -> int:
        """The number of the training attempt starting now (1 for a new run, one more at each resume).

        A kill in the middle of a metrics write leaves a last line without its end; it is cut off
        here, so that the new attempt's first record starts a line of its own.
        """
        path = self.path / "metrics.jsonl"
        logged = path.is_file() and path.stat().st_size > 0
        if logged:
            _cut_torn_line(path)
        return (self.status().get("attempt") or (1 if logged else 0)) + 1

    def append_metrics(self, record: dict[str, Any]) -> None:
        _append_line(self.path / "metrics.jsonl", record)

    def metrics(self, after_step: int = -1) -> list[dict[str, Any]]:
        """The history's records (runs/history.py: what an earlier attempt logged past where a later one
        resumed is dropped) with step > after_step; a half-written last line is not read yet."""
        return self.reader.with_metrics(self.path, lambda log: _undamaged(log).history.records(after_step), None)

    def losses(self) -> Losses:
        """The last train loss and best eval loss of the history, without keeping its records."""
        return self.reader.with_metrics(self.path, lambda log: _undamaged(log).history.losses(), 0)

    def metrics_page(self, after: int = -1, attempt: int | None = None) -> Page:
        """What a poller holding the records up to step ``after`` of ``attempt`` is missing (a damaged
        metrics file: what comes before the damaged line), the older part thinned on a long run."""
        return self.reader.with_metrics(self.path, lambda log: log.history.page(after, attempt), TAIL)

    def check(self) -> None:
        """DamagedRun naming the first damaged file: what export and evaluation refuse before doing anything."""
        self.status()
        for read in (self.settings, self.manifest):
            try:
                read()
            except NotFound:
                pass
        self.losses()
        list(self.evaluations())
        self.exports()


def _undamaged(log: MetricsLog) -> MetricsLog:
    if log.damage:
        raise log.damage.with_traceback(None)  # a kept log's damage is raised at every poll: no growing traceback
    return log


@dataclass(frozen=True)
class RunStore:
    root: Path
    reader: FileReader = field(default=FILES, compare=False, repr=False)
    """Handed to each of its runs."""

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
        return Run(path, self.reader)

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
            if (status := unless_missing(Run(path).status)) and status["status"] == "running":
                raise RunExists(f"run {name!r} is still training (pid {status.get('pid')}); stop it first")
            shutil.rmtree(path)
        path.mkdir(parents=True)
        run = Run(path, self.reader)
        run.set_status("queued")
        return run

    def __iter__(self) -> Iterator[Run]:
        if not self.root.is_dir():
            return iter(())
        return iter(sorted((Run(p, self.reader) for p in self.root.iterdir() if (p / "status.json").exists()),
                           key=lambda r: r.name))

