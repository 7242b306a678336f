"""The run store: ``ft_runs/<name>/`` with settings, data, status, metrics, evaluations and weights.

The package itself is callable, so that ``jupyter_finetune.runs()`` lists the runs (as
``api.runs`` does) while ``jupyter_finetune.runs`` stays an ordinary package for imports; the
export package does the same.
"""

import sys
import types
from pathlib import Path

from .damage import DamagedRun
from .records import FINE_TUNED, DataManifest, EvalRecord, EvalSummary, RunSettings, SystemResult
from .store import DataRow, Run, RunExists, RunStore, holds_adapter, runs_root

__all__ = ["FINE_TUNED", "DamagedRun", "DataManifest", "DataRow", "EvalRecord", "EvalSummary", "Run", "RunExists",
           "RunSettings", "RunStore", "SystemResult", "holds_adapter", "list_runs", "runs_root"]


def list_runs(runs_dir: str | Path | None = None) -> list:
    """A RunSummary per run in the store (``runs_dir``, default ./ft_runs), newest first."""
    from .summary import summarize_all

    return summarize_all(RunStore.at(runs_dir))


class _CallablePackage(types.ModuleType):
    def __call__(self, runs_dir: str | Path | None = None) -> list:
        return list_runs(runs_dir)


sys.modules[__name__].__class__ = _CallablePackage
