"""Read raw records from a cell body, a file, a DataFrame, a datasets.Dataset or a list.

Row numbers are what a user can find the record by: the line number for JSONL (blank lines
counted), otherwise the 1-based position of the record.
"""

from __future__ import annotations

import codecs
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidValue, NotFound, UnsupportedType, reworded

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
BOM = "\ufeff"
"""Windows tools (Notepad, Excel's "CSV UTF-8") start UTF-8 files with it; JSON parsers refuse it."""
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SIGNATURES = {b"PAR1": "a Parquet file: rename it to .parquet", b"PK\x03\x04": "a zip archive (or an Excel "
               "workbook): unpack it, or save the sheet as CSV UTF-8", b"\x1f\x8b": "a gzip archive: unpack it"}
"""The first bytes of binary files that users rename or mistake for text, and what to do with each."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """A record as read, or the reason it could not be read."""

    row: int
    value: Any = None
    error: str | None = None


def read_text(text: str) -> list[RawRow]:
    """JSONL (one object per line), or a whole JSON array."""
    text = text.removeprefix(BOM)
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
        return read_text(decoded_text(path))
    if suffix == ".csv":
        import pandas as pd

        return read_records(pd.read_csv(io.StringIO(decoded_text(path)), dtype=str, keep_default_na=False))
    if suffix == ".parquet":
        import pandas as pd

        return read_records(pd.read_parquet(path))
    raise InvalidValue(f"{path}: unsupported file type {suffix!r}. Use one of {', '.join(SUFFIXES)}.")


def decoded_text(path: Path) -> str:
    """The file as UTF-8 text (a leading BOM dropped), or an error saying what it holds instead."""
    with reworded(path, "cannot read it"):
        data = path.read_bytes()
    head = data[:4096]
    kind = next((what for magic, what in _SIGNATURES.items() if head.startswith(magic)), None)
    if head.startswith(_UTF16_BOMS) or (kind is None and b"\x00" in head and _utf16_without_bom(head)):
        raise InvalidValue(f"{path}: looks like UTF-16, not UTF-8 — save it as UTF-8")
    if kind or b"\x00" in head:
        raise InvalidValue(f"{path}: binary data, not text — " + (f"it looks like {kind}" if kind else
                           "is this a .parquet file renamed? Give UTF-8 text, or a Parquet file named .parquet"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidValue(f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}) — save it as UTF-8 "
                           "(in Excel: Save As, CSV UTF-8)") from None


def _utf16_without_bom(head: bytes) -> bool:
    """Mostly-ASCII text in UTF-16 has a zero in nearly every other byte, and hardly any in between."""
    pairs = len(head) // 2
    zeros = sorted((head[0:2 * pairs:2].count(0), head[1:2 * pairs:2].count(0)))
    return pairs > 0 and zeros[1] > 0.7 * pairs and zeros[0] < 0.1 * pairs


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
