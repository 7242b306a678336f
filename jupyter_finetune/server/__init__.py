"""The jupyter_server extension: read-only JSON endpoints over the run store for the JupyterLab panels.

It imports the run store and nothing heavier (no torch, no ``api``), so the server process stays
light; training happens in kernels, and the files they write are all the server reads.
"""

from __future__ import annotations

from typing import Any

from .handlers import setup_handlers
from .settings import JupyterFinetune, store_root


def _load_jupyter_server_extension(server_app: Any) -> None:
    root = store_root(JupyterFinetune(parent=server_app).runs_dir, server_app.root_dir)
    setup_handlers(server_app.web_app, root)
    server_app.log.info("jupyter_finetune: serving runs from %s", root)
