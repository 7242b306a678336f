"""Problems found in a data set: each names its rows, the field and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from ..errors import FinetuneError

Severity = Literal["error", "warning"]
MAX_LISTED = 20


@dataclass(frozen=True)
class Problem:
    """One finding about one row (or a group of rows, for duplicates and leakage)."""

    severity: Severity
    code: str
    rows: tuple[int, ...]
    message: str
    fix: str
    field: str | None = None

    def __str__(self) -> str:
        where = _rows_label(self.rows)
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}. Fix: {self.fix}"


def _rows_label(rows: tuple[int, ...]) -> str:
    if not rows:
        return "data"
    if len(rows) == 1:
        return f"row {rows[0]}"
    shown = ", ".join(str(r) for r in rows[:8])
    more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
    return f"rows {shown}{more}"


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


class DataError(FinetuneError, ValueError):
    """Raised before any training when the data has errors; carries every problem found."""

    def __init__(self, problems: list[Problem], source: str = "data"):
        self.problems = problems
        errs = errors(problems)
        lines = [f"{source}: {len(errs)} error(s); nothing was stored or trained."]
        lines += [f"  - {p}" for p in errs[:MAX_LISTED]]
        if len(errs) > MAX_LISTED:
            lines.append(f"  ... and {len(errs) - MAX_LISTED} more errors of the same kinds")
        super().__init__("\n".join(lines))
