"""Where the server finds the run store: ``c.JupyterFinetune.runs_dir``, else the kernels' own default."""

from __future__ import annotations

from pathlib import Path

from traitlets import Unicode
from traitlets.config import Configurable

from ..runs import runs_root


class JupyterFinetune(Configurable):
    """Server-side settings, read from the ServerApp's config (``c.JupyterFinetune.runs_dir = ...``)."""

    runs_dir = Unicode("", config=True, help="The run store the server reads. Empty: $JUPYTER_FINETUNE_RUNS, "
                                             "else ft_runs; a relative path is taken from the server's root_dir.")


def store_root(runs_dir: str, root_dir: str) -> Path:
    """The same store a notebook in root_dir writes to by default (runs_root), as an absolute, resolved path."""
    return (Path(root_dir).expanduser() / runs_root(runs_dir or None)).resolve()
