"""The run store: ``ft_runs/<name>/`` with config, data summary, status, metrics and weights."""

from .store import Run, RunExists, RunStore, runs_root

__all__ = ["Run", "RunExists", "RunStore", "runs_root"]
