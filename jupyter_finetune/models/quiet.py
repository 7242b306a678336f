"""Quiet the libraries while our own output reports on them: their progress bars, and deprecation
warnings one library raises about another that the user can do nothing about."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

FOREIGN_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)
"""peft (up to 0.21 at least) reads the property transformers 5.24 renamed, at every adapter load."""


@contextmanager
def library_noise_off() -> Iterator[None]:
    """transformers' weight-loading bars, datasets' map bars and FOREIGN_DEPRECATIONS, restored afterwards."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_was, ds_was = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            for message in FOREIGN_DEPRECATIONS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield
    finally:
        if hf_was:
            hf_logging.enable_progress_bar()
        if ds_was:
            datasets.enable_progress_bars()
