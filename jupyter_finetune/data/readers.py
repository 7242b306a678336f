"""Read raw records from a cell body, a file, a DataFrame, a datasets.Dataset or a list.

Row numbers are what a user can find the record by: the line number for JSONL (blank lines
counted), otherwise the 1-based position of the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidValue, NotFound, UnsupportedType

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True, slots=True)
class RawRow:
    """A record as read, or the reason it could not be read."""

    row: int
    value: Any = None
    error: str | None = None


def read_text(text: str) -> list[RawRow]:
    """JSONL (one object per line), or a whole JSON array."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except json.JSONDecodeError:
            pass  # not one array after all: read it line by line to name the bad line
        else:
            return [RawRow(i, v) for i, v in enumerate(values, 1)]
    lines = text.splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    try:  # one parse of the whole body is much faster than one per line
        values = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except json.JSONDecodeError:
        values = None
    if values is not None and len(values) == len(numbered):
        return [RawRow(n, v) for (n, _), v in zip(numbered, values)]
    rows = []
    loads = json.loads
    for number, line in numbered:
        try:
            rows.append(RawRow(number, loads(line)))
        except json.JSONDecodeError as exc:
            rows.append(RawRow(number, error=f"invalid JSON ({exc.msg} at column {exc.colno})"))
    return rows


def read_path(path: Path) -> list[RawRow]:
    suffix = path.suffix.lower()
    if not path.exists():
        raise NotFound(f"{path}: no such file. Give a path to a {'/'.join(SUFFIXES)} file.")
    if path.is_dir():
        raise InvalidValue(f"{path}: a folder, not a file — give the path of a {'/'.join(SUFFIXES)} file")
    if suffix in (".jsonl", ".json"):
        return read_text(path.read_text(encoding="utf-8"))
    if suffix == ".csv":
        import pandas as pd

        return read_records(pd.read_csv(path, dtype=str, keep_default_na=False))
    if suffix == ".parquet":
        import pandas as pd

        return read_records(pd.read_parquet(path))
    raise InvalidValue(f"{path}: unsupported file type {suffix!r}. Use one of {', '.join(SUFFIXES)}.")


def read_records(source: Any) -> list[RawRow]:
    """A pandas DataFrame, a datasets.Dataset, or a list of dicts."""
    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        records = source.to_dict("records")
    elif hasattr(source, "to_list") and hasattr(source, "features"):
        records = source.to_list()
    elif isinstance(source, (list, tuple)):
        records = list(source)
    else:
        raise UnsupportedType(
            f"cannot read data from a {type(source).__name__}: give JSONL text, a file path, "
            "a pandas DataFrame, a datasets.Dataset or a list of dicts"
        )
    return [RawRow(i, _plain(v)) for i, v in enumerate(records, 1)]


def _plain(value: Any) -> Any:
    """Nested columns come back from Parquet as numpy arrays; make them lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
