"""``metrics.jsonl`` read from where the previous read stopped, so a poll costs what was appended since.

The trainer appends a line per log step. A log remembers the offset after the last complete line
and a few bytes before it; the next read checks those bytes are still there and reads on from the
offset. A file that was replaced, cut shorter than the offset, or rewritten in place is read again
from the start. A half-written last line (no newline yet) is left for the next read. The first
line in the wrong shape marks the run damaged; the log then waits, rereading only that line, until
someone fixes or replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .damage import NUMBER, WHOLE, DamagedRun, Malformed, field, whole_file
from .files import parse_json, stat_inside, unreadable
from .history import History

NAME = "metrics.jsonl"
CHUNK = 1 << 20
MARK = 64
"""Bytes before the offset that must be unchanged for a read to carry on from it."""
BAD_MARK = 1 << 16
"""Bytes of a damaged line kept to tell whether it was fixed."""


def check_record(record: Any) -> dict[str, Any]:
    """A record as the history takes it: an object with a whole ``step``, number-or-null losses (and reward
    accuracies, a preference run's) and an attempt of 1 or more."""
    record = whole_file(record)
    field(record, "step", WHOLE, required=True)
    for key in ("loss", "eval_loss", "reward_accuracy", "eval_reward_accuracy"):
        field(record, key, NUMBER)
    attempt = field(record, "attempt", WHOLE)
    if attempt is not None and attempt < 1:
        raise Malformed(f"attempt is {attempt}, not 1 or more")
    return record


def scan_lines(block: bytes) -> list[Any]:
    """Each line of ``block`` (whole lines, each ending in a newline) as one JSON value; ValueError or
    StopIteration when any line is not exactly one (a blank line included): its lines are then read one by
    one. One pass of json's C scanner over the block is twice as fast as ``json.loads`` per line."""
    text, pos, values = block.decode(), 0, []
    while pos < len(text):
        value, pos = _SCAN(text, pos)
        if text[pos] != "\n":
            raise ValueError("more than one value on a line")
        values.append(value)
        pos += 1
    return values


_SCAN = json.JSONDecoder().scan_once


class MetricsLog:
    """One run's metrics read so far: its ``history``, and ``damage`` once a line cannot be read."""

    def __init__(self, run_dir: Path, keep: int | None):
        self.run_dir, self.keep = run_dir, keep
        self._restart()

    def _restart(self) -> None:
        self.history = History(self.keep)
        self.damage: DamagedRun | None = None
        self.offset = 0
        """Where the next line starts (or the damaged line does)."""
        self.line = 0
        self.mark = b""
        """The bytes just before ``offset`` (after a damaged line: the line itself, from ``offset``)."""
        self.stamp: tuple[int, int, int, int] | None = None
        """(device, inode, size, mtime) of the file when it was last read."""

    def refresh(self) -> None:
        """Read what was appended since the last call (everything, the first time)."""
        try:
            found = stat_inside(self.run_dir, NAME)
        except DamagedRun as e:
            self._restart()
            self.damage = e
            return
        if found is None:
            self._restart()
            return
        stamp = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
        if stamp == self.stamp:
            return
        if self.stamp is not None and (stamp[:2] != self.stamp[:2] or stamp[2] == self.stamp[2]
                                       or stamp[2] < self.offset):
            self._restart()  # replaced, cut short, or rewritten in place
        try:
            with open(self.run_dir / NAME, "rb") as f:
                if self.mark and not self._marked(f):
                    self._restart()
                if self.damage is None:
                    self._read(f)
        except FileNotFoundError:
            self._restart()
            return
        except OSError as e:
            self._restart()
            self.damage = unreadable(self.run_dir, NAME, e)
        self.stamp = stamp

    def _marked(self, f: Any) -> bool:
        """True when the bytes remembered are still where they were."""
        at = self.offset if self.damage else self.offset - len(self.mark)
        f.seek(at)
        return f.read(len(self.mark)) == self.mark

    def _read(self, f: Any) -> None:
        f.seek(self.offset)
        pending = b""
        while chunk := f.read(CHUNK):
            data = pending + chunk
            end = data.rfind(b"\n") + 1
            pending = data[end:]
            if end and not self._take(data[:end]):
                return

    def _take(self, block: bytes) -> bool:
        """Add the records of these whole lines; False, with ``damage`` set, at the first one in the wrong shape."""
        try:
            records = [check_record(r) for r in scan_lines(block)]
        except (ValueError, StopIteration):  # Malformed included: find the line, one by one
            return self._take_lines(block)
        for record in records:
            self.history.add(record)
        self._advance(block, len(records))
        return True

    def _take_lines(self, block: bytes) -> bool:
        start = 0
        for line in block[:-1].split(b"\n"):
            self.line += 1
            if line.strip():
                try:
                    self.history.add(check_record(parse_json(line)))
                except Malformed as e:
                    self._advance(block[:start], 0)
                    self.damage = DamagedRun(self.run_dir, NAME, e.reason, self.line)
                    self.mark = line[:BAD_MARK]
                    return False
            start += len(line) + 1
        self._advance(block, 0)
        return True

    def _advance(self, taken: bytes, lines: int) -> None:
        self.line += lines
        self.offset += len(taken)
        self.mark = (self.mark + taken[-MARK:])[-MARK:]
