"""Drift: a run's evaluations over time and data versions, and the drops between them.

Each evaluation is compared with the previous one of the same adapter (content hash), never with one
of another adapter: a retrained adapter starts a new segment, so a history cannot pass a change of
model off as a change in the data. A fall of the chosen score by more than the tolerance is a drop.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidValue
from ..runs import FINE_TUNED, EvalRecord

DEFAULT_TOLERANCE = 0.05


@dataclass(frozen=True)
class Drop:
    """A fall of ``system``'s ``metric`` beyond the tolerance between two evaluations of one adapter."""

    system: str
    metric: str
    before: EvalRecord
    after: EvalRecord
    tolerance: float

    @property
    def fall(self) -> float:
        return self.before.score(self.metric, self.system) - self.after.score(self.metric, self.system)

    def text(self) -> str:
        """``DROP fine-tuned exact 0.80 -> 0.60 (-0.20 > 0.05) from data v1a2b (date) to v3c4d (date), adapter ...``"""
        b, a = self.before, self.after
        return (f"DROP {self.system} {self.metric} {b.score(self.metric, self.system):.2f} -> "
                f"{a.score(self.metric, self.system):.2f} (-{self.fall:.2f} > {self.tolerance:g}) from data "
                f"v{b.data_version} ({b.date}) to v{a.data_version} ({a.date}), adapter {a.adapter_hash or '?'}")


@dataclass(frozen=True)
class Entry:
    """One evaluation in the history, with what it is compared to."""

    number: int
    """1 for the oldest."""
    record: EvalRecord
    segment: int
    """Which adapter it scored, as its place in ``History.adapters`` (0: the first adapter evaluated)."""
    adapter_change: str | None
    """``adapter changed: a1b2c3 -> d4e5f6`` at the first evaluation after a change; else None."""
    drop: Drop | None


@dataclass(frozen=True)
class History:
    """A run's evaluation history for one metric and system, oldest first, with its drops."""

    run: str
    metric: str
    system: str
    tolerance: float
    entries: tuple[Entry, ...]
    systems: tuple[str, ...]
    """Every system scored in any of the evaluations, the compared one first."""

    @property
    def drops(self) -> list[Drop]:
        return [e.drop for e in self.entries if e.drop]

    @property
    def adapters(self) -> list[str]:
        """The adapters' hashes in the order first evaluated."""
        return list(dict.fromkeys(e.record.adapter_hash for e in self.entries))

    def empty_text(self) -> str:
        return (f"run {self.run!r} has no evaluations in its history yet: evaluate it with %ft_eval {self.run} "
                f"(and again with --data NEWER on a later version of the data)")

    def rows(self) -> list[dict[str, str]]:
        """The table's rows as text: number, date, data version, adapter, the metric per system, flag."""
        def score(record: EvalRecord, system: str) -> str:
            value = record.score(self.metric, system)
            return "-" if value is None else f"{value:.2f}"

        return [{"#": str(e.number), "date": e.record.date, "data": f"{e.record.data} v{e.record.data_version}".strip(),
                 "adapter": e.record.adapter_hash or "?", **{s: score(e.record, s) for s in self.systems},
                 "flag": "; ".join(f for f in (e.adapter_change, e.drop and e.drop.text()) if f)}
                for e in self.entries]

    def text(self) -> str:
        if not self.entries:
            return self.empty_text()
        rows = self.rows()
        columns = list(rows[0])
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns[:-1]}
        lines = [f"{self.run}: {len(rows)} evaluations of {self.system} on {self.metric}, "
                 f"{len(self.adapters)} adapter(s), drops beyond {self.tolerance:g} flagged",
                 "  ".join(c.ljust(widths.get(c, 0)) for c in columns).rstrip()]
        lines += ["  ".join(r[c].ljust(widths.get(c, 0)) for c in columns).rstrip() for r in rows]
        drops = self.drops
        lines.append(f"{len(drops)} drop(s) beyond {self.tolerance:g}" if drops else
                     f"no drop beyond {self.tolerance:g}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()


def analyse(run: str, records: list[EvalRecord], *, metric: str | None = None,
            tolerance: float = DEFAULT_TOLERANCE, system: str = FINE_TUNED) -> History:
    """``records`` (oldest first) each compared with the previous record of the same adapter that scored
    ``metric`` (default: the newest record's first metric) for ``system``. A fall is rounded to 9 decimals
    before it is compared with ``tolerance``, so 0.80 -> 0.75 is not a drop beyond 0.05."""
    if tolerance < 0:
        raise InvalidValue(f"--tolerance {tolerance:g}: give how far a score may fall unflagged, e.g. 0.05")
    if not records:
        return History(run, metric or "", system, tolerance, (), (system,))
    metric = metric or (records[-1].metrics[0] if records[-1].metrics else "")
    scored = sorted({m for r in records for s in r.systems.values() for m in s.scores})
    if metric not in scored:
        raise InvalidValue(f"--metric {metric!r}: the evaluations of {run!r} scored {', '.join(scored) or 'nothing'}")
    systems = tuple(dict.fromkeys([system, *(s for r in records for s in r.systems)]))
    entries, last_of, segments, previous = [], {}, {}, None
    for number, record in enumerate(records, 1):
        change = None
        if previous is not None and record.adapter_hash != previous.adapter_hash:
            change = f"adapter changed: {previous.adapter_hash or '?'} -> {record.adapter_hash or '?'}"
        segment = segments.setdefault(record.adapter_hash, len(segments))
        before, drop = last_of.get(record.adapter_hash), None
        now = record.score(metric, system)
        if now is not None:
            if before is not None and round(before.score(metric, system) - now, 9) > tolerance:
                drop = Drop(system, metric, before, record, tolerance)
            last_of[record.adapter_hash] = record
        entries.append(Entry(number, record, segment, change, drop))
        previous = record
    return History(run, metric, system, tolerance, tuple(entries), systems)
