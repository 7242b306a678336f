"""Making a data set from what the user has: JSONL text, a file, a DataFrame, a Dataset or a list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InvalidValue
from .dataset import DEFAULT_MAX_LENGTH, FtDataset, prepare
from .readers import BOM, RawRow, read_path, read_records, read_text


def read_rows(source: Any) -> list[RawRow]:
    """Rows from JSONL text, a file path, a DataFrame, a datasets.Dataset or a list of dicts."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and not source.removeprefix(BOM).lstrip().startswith(("{", "["))):
        return read_path(Path(source).expanduser())
    if isinstance(source, str):
        return read_text(source)
    return read_records(source)


def load_data(name: str, source: Any, *, model: str, format: str = "auto", split: float | Any = 0.1, seed: int = 0,
              max_length: int = DEFAULT_MAX_LENGTH) -> FtDataset:
    """Check, count and split ``source`` with ``model``'s chat template and context length.

    ``split`` is a test fraction, or a test set in any form ``source`` accepts. Raises
    ``DataError`` listing every problem (with row numbers).
    """
    from ..models import load_config, load_tokenizer
    from ..models.size import context_length, parameter_count

    if not name.isidentifier():
        raise InvalidValue(f"data name {name!r} must be a Python identifier (letters, digits, _), e.g. tickets")
    test = split if isinstance(split, (int, float)) else read_rows(split)
    config = load_config(model)
    return prepare(read_rows(source), name=name, tokenizer=load_tokenizer(model), model=model, fmt=format,
                   split=test, seed=seed, max_length=max_length, context_length=context_length(config),
                   parameters=parameter_count(config))
