"""A wheel build hook: hatch skips a missing shared-data folder silently, so a wheel built before
labextension/build.py would install without the JupyterLab extension; refuse to build it instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        built = Path(self.root) / "jupyter_finetune" / "labextension" / "package.json"
        if version == "standard" and not built.is_file():
            raise FileNotFoundError(f"{built} is missing: build the JupyterLab extension first with "
                                    "`python labextension/build.py` (make install does)")
