"""jupyter-finetune: fine-tune an open LLM from a notebook and see whether it beat the base model.

``%load_ext jupyter_finetune`` registers the magics; ``jupyter_finetune.load_data(...)``,
``train``, ``evaluate`` and the rest of ``api`` do the same from plain Python. Nothing heavy
(torch, transformers) is imported until first use.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL", "api", "chat", "chat_session", "compare_runs", "eval_history", "evaluate", "example_data",
           "export", "load_data", "load_ipython_extension", "plan", "prepare_training", "runs", "stop", "train",
           "train_async"]


class _StdoutUnlessConfigured(logging.StreamHandler):
    """The package's messages (progress lines, "stopping X", a model's one-time conversion) on stdout,
    where a notebook cell and a script show them, until the user configures logging.

    ``sys.stdout`` is looked up at each message, so a cell's stream (or a test's capture) gets it.
    Once the root logger has a handler (``logging.basicConfig``, pytest's caplog), messages reach
    the user through it alone, by propagation, rather than twice. To silence them:
    ``logging.getLogger("jupyter_finetune").setLevel(logging.WARNING)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        """StreamHandler assigns a stream; this one always writes to the current sys.stdout."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


_log = logging.getLogger(__name__)
if not _log.handlers:
    _log.addHandler(_StdoutUnlessConfigured())
if _log.level == logging.NOTSET:
    _log.setLevel(logging.INFO)


def load_ipython_extension(ipython: Any) -> None:
    from .magics import register

    register(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The jupyter_server extension (the runs and resources endpoints); importing it loads no torch."""
    return [{"module": "jupyter_finetune.server"}]


def __getattr__(name: str) -> Any:
    """The api, lazily. ``export`` and ``runs`` are also subpackages, and callable ones, so that
    ``ft.export(...)`` and ``ft.runs()`` do what ``api.export`` and ``api.runs`` do."""
    if name in ("api", "export", "runs"):
        return import_module(f".{name}", __name__)
    api = import_module(".api", __name__)
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'jupyter_finetune' has no attribute {name!r}")
