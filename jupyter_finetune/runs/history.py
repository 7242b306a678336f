"""A run's metrics as its curves show them: one history, whatever attempts and restarts it went through.

A resumed run appends records of a new attempt. If it resumed from the checkpoint at step c, its
first record has a step past c, though the earlier attempt may have logged steps past c; without
a checkpoint it starts again at step 1 (and files written before attempts were numbered read 1, 2,
3, 1, 2, ...). So a record of a newer attempt, or with a step lower than the last one, drops the
records at its step and after, then joins: the history is always in step order, and a train and
an eval record may share a step (the eval one comes second).

Every loss stays in compact columns (about 16 bytes a record); full records are kept for the last
``keep`` only, so the server can hold a million-line run and still answer any poll. A client that
is further behind than those gets the older part as thinned points.
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any

THIN = 1000
"""Points per curve at most, for the part of a page that is older than the full records kept."""


@dataclass(frozen=True)
class Losses:
    """What a listing shows of a run's metrics."""

    last_train_loss: float | None
    best_eval_loss: float | None
    attempt: int
    """The history's attempt: a file without attempt numbers counts each restart as one."""
    reward_accuracy: float | None = None
    """A preference run's last reward accuracy: on held-out pairs where it has them, else on a train batch."""


@dataclass(frozen=True)
class Page:
    """Records past a step, for a poller."""

    records: list[dict[str, Any]]
    """Each with the ``attempt`` it belongs to; thinned points have only ``step``, ``attempt`` and a loss."""
    thinned: bool
    """True when the older part of ``records`` is thinned points rather than every record."""
    attempt: int


class History:
    """The records of a run in step order, with the attempt rule applied as each is added."""

    def __init__(self, keep: int | None = None):
        """``keep``: how many full records to hold (None: all of them, 0: none, just the losses)."""
        self.keep = keep
        self.tail: deque[dict[str, Any]] = deque()
        """The last full records: every record with a step past ``cut``."""
        self.cut: int | None = None
        """The last step whose records were let go of (None: none were)."""
        self.train = (array("q"), array("d"))
        self.evals = (array("q"), array("d"))
        self.attempt = 0
        self.starts: list[tuple[int, int]] = []
        """(attempt, its first step) in order; a record belongs to the last one that starts at or before it."""
        self.last_step: int | None = None
        self.best_eval: float | None = None
        self.accuracy: dict[str, tuple[int, float]] = {}
        """The last (step, value) of ``reward_accuracy`` and of ``eval_reward_accuracy``: a preference run's."""

    def add(self, record: dict[str, Any]) -> None:
        """Join a checked record (a whole ``step``; ``loss``, ``eval_loss`` numbers or null; ``attempt`` >= 1)."""
        step, attempt = record["step"], record.get("attempt") or 1
        if self.last_step is None:
            self.attempt = attempt
            self.starts.append((attempt, step))
        elif attempt > self.attempt or step < self.last_step:
            self._drop_from(step)
            self.attempt = max(attempt, self.attempt + 1)
            self.starts.append((self.attempt, step))
        self.last_step = step
        loss, eval_loss = record.get("loss"), record.get("eval_loss")
        if loss is not None:
            self.train[0].append(step)
            self.train[1].append(loss)
        if eval_loss is not None:
            self.evals[0].append(step)
            self.evals[1].append(eval_loss)
            if eval_loss == eval_loss and (self.best_eval is None or eval_loss < self.best_eval):  # NaN is no best
                self.best_eval = float(eval_loss)
        for key in ("reward_accuracy", "eval_reward_accuracy"):
            if record.get(key) is not None:
                self.accuracy[key] = (step, record[key])
        if self.keep == 0:
            self.cut = step
        else:
            self.tail.append(record)
            if self.keep is not None and len(self.tail) > self.keep:
                self._trim()

    def _trim(self) -> None:
        """Let go of the oldest full records past ``keep``, a step at a time (its train and eval records together)."""
        while len(self.tail) > self.keep or (self.tail and self.tail[0]["step"] == self.cut):
            self.cut = self.tail.popleft()["step"]

    def _drop_from(self, step: int) -> None:
        for steps, values in (self.train, self.evals):
            del values[bisect.bisect_left(steps, step):]
            del steps[bisect.bisect_left(steps, step):]
        while self.tail and self.tail[-1]["step"] >= step:
            self.tail.pop()
        if self.cut is not None and self.cut >= step:
            self.cut = step - 1
        self.starts = [s for s in self.starts if s[1] < step]
        self.best_eval = min((v for v in self.evals[1] if v == v), default=None)
        self.accuracy = {k: v for k, v in self.accuracy.items() if v[0] < step}  # the new attempt logs its own

    def losses(self) -> Losses:
        steps, values = self.train
        found = self.accuracy.get("eval_reward_accuracy") or self.accuracy.get("reward_accuracy")
        return Losses(values[-1] if steps else None, self.best_eval, self.attempt, found[1] if found else None)

    def records(self, after: int = -1) -> list[dict[str, Any]]:
        """The full records held with a step past ``after``."""
        out = []
        for record in reversed(self.tail):
            if record["step"] <= after:
                break
            out.append(record)
        return out[::-1]

    def page(self, after: int, attempt: int | None = None) -> Page:
        """What a poller holding records up to ``after`` of ``attempt`` is missing.

        A poller on an older attempt also gets the newer attempts' records from their first step, so it
        can drop what they replace; one on an attempt this history does not have (the run was trained
        again from scratch) gets everything.
        """
        if attempt is not None and attempt != self.attempt and self.starts:
            newer = [first for a, first in self.starts if a > attempt]
            after = min(after, newer[0] - 1) if attempt < self.attempt and newer else -1
        points = self._points(after) if self.cut is not None and after < self.cut else []
        full = [{**r, "attempt": self.attempt_at(r["step"])} for r in self.records(after)]
        return Page(points + full, bool(points), self.attempt)

    def attempt_at(self, step: int) -> int:
        firsts = [first for _, first in self.starts]
        return self.starts[max(0, bisect.bisect_right(firsts, step) - 1)][0] if self.starts else 1

    def _points(self, after: int) -> list[dict[str, Any]]:
        """The losses with a step in (after, cut], at most THIN per curve, first and last included."""
        curves = []
        for key, (steps, values) in (("loss", self.train), ("eval_loss", self.evals)):
            lo, hi = bisect.bisect_right(steps, after), bisect.bisect_right(steps, self.cut)
            stride = max(1, math.ceil((hi - lo) / THIN))
            picked = list(range(lo, hi, stride)) + ([hi - 1] if hi > lo and (hi - 1 - lo) % stride else [])
            curves.append([(steps[i], rank, {"step": steps[i], "attempt": self.attempt_at(steps[i]), key: values[i]})
                           for i in picked for rank in [key == "eval_loss"]])
        return [point for *_, point in heapq.merge(*curves, key=lambda p: p[:2])]
