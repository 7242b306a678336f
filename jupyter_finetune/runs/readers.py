"""Reading a run's files, each checked as it is parsed: afresh, or kept between polls.

``FileReader`` reads afresh at every call (a kernel's listing, export, evaluation). The server's
handlers hold a ``CachedReader``, which keeps each parsed file until its inode, size or mtime
changes, and each run's metrics log between polls, so that a poll reads only the lines appended
since the previous one, however long the run.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from .damage import DamagedRun, Malformed
from .files import parse_json, stat_inside, unreadable
from .metrics_log import MetricsLog

T = TypeVar("T")
TAIL = 1000
"""Full metrics records a CachedReader keeps per run: a poller that is further behind gets thinned points."""


class FileReader:
    """Reads a run's files afresh at every call."""

    def load(self, run_dir: Path, name: str, parse: Callable[[Any], T]) -> T | None:
        """The file's JSON as ``parse`` checks and builds it; None when the file is not there; DamagedRun when
        it cannot be read, is not JSON, or ``parse`` finds it Malformed."""
        return None if stat_inside(run_dir, name) is None else self._parse(run_dir, name, parse)

    @staticmethod
    def _parse(run_dir: Path, name: str, parse: Callable[[Any], T]) -> T | None:
        try:
            return parse(parse_json((run_dir / name).read_bytes()))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise unreadable(run_dir, name, e) from None
        except Malformed as e:
            raise DamagedRun(run_dir, name, e.reason) from None

    def with_metrics(self, run_dir: Path, use: Callable[[MetricsLog], T], keep: int | None) -> T:
        """``use`` applied to the run's metrics log, read up to now, holding at least ``keep`` full records
        (None: all of them)."""
        log = MetricsLog(run_dir, keep)
        log.refresh()
        return use(log)

    def retain(self, run_dirs: Iterable[Path]) -> None:
        """Forget what is kept about runs other than these (nothing is kept here)."""


class CachedReader(FileReader):
    """Keeps what it read between polls. Thread-safe: the server answers requests from a thread pool."""

    def __init__(self, keep: int = TAIL):
        self.keep = keep
        self._files: dict[tuple[Path, str, Callable[[Any], Any]], tuple[tuple[int, ...], Any, str | None]] = {}
        self._logs: dict[Path, tuple[threading.Lock, MetricsLog]] = {}
        self._lock = threading.Lock()

    def load(self, run_dir: Path, name: str, parse: Callable[[Any], T]) -> T | None:
        found = stat_inside(run_dir, name)
        key = (run_dir, name, parse)
        if found is None:
            self._files.pop(key, None)
            return None
        stamp = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
        held = self._files.get(key)
        if held is None or held[0] != stamp:
            try:
                held = (stamp, self._parse(run_dir, name, parse), None)
            except DamagedRun as e:
                held = (stamp, None, e.reason)
            self._files[key] = held
        if held[2] is not None:
            raise DamagedRun(run_dir, name, held[2])
        return held[1]

    def with_metrics(self, run_dir: Path, use: Callable[[MetricsLog], T], keep: int | None) -> T:
        """The run's log kept since the last poll (keeping ``TAIL`` full records); every record is never kept."""
        if keep is None or keep > self.keep:
            return super().with_metrics(run_dir, use, keep)
        with self._lock:
            if run_dir not in self._logs:
                self._logs[run_dir] = (threading.Lock(), MetricsLog(run_dir, self.keep))
            lock, log = self._logs[run_dir]
        with lock:
            log.refresh()
            return use(log)

    def retain(self, run_dirs: Iterable[Path]) -> None:
        kept = set(run_dirs)
        with self._lock:
            for run_dir in [d for d in self._logs if d not in kept]:
                del self._logs[run_dir]
            for key in [k for k in self._files if k[0] not in kept]:
                self._files.pop(key, None)
