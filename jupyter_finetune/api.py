"""The plain-Python facade: everything a magic does, callable from a script."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .data import DEFAULT_MAX_LENGTH, FtDataset, RawRow, prepare, read_path, read_records, read_text

DEFAULT_MODEL = "smollm2-135m"


def data_dir() -> Path:
    """Where stored copies of data sets go: $JUPYTER_FINETUNE_DATA, else ./ft_data."""
    return Path(os.environ.get("JUPYTER_FINETUNE_DATA", "ft_data"))


def read_rows(source: Any) -> list[RawRow]:
    """Rows from JSONL text, a file path, a DataFrame, a datasets.Dataset or a list of dicts."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and not source.lstrip().startswith(("{", "["))):
        return read_path(Path(source).expanduser())
    if isinstance(source, str):
        return read_text(source)
    return read_records(source)


def load_data(name: str, source: Any, *, format: str = "auto", split: float | Any = 0.1, seed: int = 0,
              model: str = DEFAULT_MODEL, max_length: int = DEFAULT_MAX_LENGTH, save: bool = True) -> FtDataset:
    """Check, count and split ``source``, store a versioned copy, and return the data set.

    ``split`` is a test fraction, or a test set in any form ``source`` accepts. Raises
    ``DataError`` listing every problem (with row numbers) before anything is stored.
    """
    from .models import load_config, load_tokenizer
    from .models.size import context_length, parameter_count

    if not name.isidentifier():
        raise ValueError(f"data name {name!r} must be a Python identifier (letters, digits, _), e.g. tickets")
    test = split if isinstance(split, (int, float)) else read_rows(split)
    config = load_config(model)
    ds = prepare(read_rows(source), name=name, tokenizer=load_tokenizer(model), model=model, fmt=format,
                 split=test, seed=seed, max_length=max_length, context_length=context_length(config),
                 parameters=parameter_count(config))
    if save:
        ds.save(data_dir())
    return ds
