"""Silence the libraries' own progress bars while our dashboard reports progress."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def library_bars_off() -> Iterator[None]:
    """transformers' weight-loading bars and datasets' map bars, restored afterwards."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_was, ds_was = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hf_was:
            hf_logging.enable_progress_bar()
        if ds_was:
            datasets.enable_progress_bars()
