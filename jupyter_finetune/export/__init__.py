"""Export a run: its adapter with a model card, merged safetensors, a GGUF file, an Ollama folder, or a
script folder that trains it again on other machines (accelerate, torchrun, SLURM).

The package itself is callable, so that ``jupyter_finetune.export("tickets-v1", "gguf")`` works
while ``jupyter_finetune.export`` stays an ordinary package for imports and dotted paths.
"""

import sys
import types
from pathlib import Path
from typing import Any

from .result import KINDS, QUANTS, ExportedFile, ExportError, ExportExists, ExportResult
from .run_export import export_run

__all__ = ["KINDS", "QUANTS", "ExportError", "ExportExists", "ExportResult", "ExportedFile", "export_named",
           "export_run"]


def export_named(run: str, to: str = "adapter", *, quant: str | None = None, out: str | Path | None = None,
                 overwrite: bool = False, runs_dir: str | Path | None = None) -> ExportResult:
    """The run of that name in the run store (``runs_dir``, default ./ft_runs), exported as ``to``."""
    from ..runs import RunStore

    return export_run(RunStore.at(runs_dir).get(run), to, quant=quant, out=out, overwrite=overwrite)


class _CallablePackage(types.ModuleType):
    def __call__(self, run: str, to: str = "adapter", **options: Any) -> ExportResult:
        return export_named(run, to, **options)


sys.modules[__name__].__class__ = _CallablePackage
