"""Training events: one plain dict per occurrence, sent to every listener.

Kinds and their keys (all JSON-serialisable):

- ``{"event": "start", "run": str, "max_steps": int, "epochs": float, "config": dict, "time": float}``
- ``{"event": "log", "step": int, "max_steps": int, "epoch": float, "loss": float | None,
  "eval_loss": float | None, "lr": float | None, "tokens_per_s": float, "memory_gb": float,
  "eta_s": float | None, "time": float}`` (``loss`` on train log steps, ``eval_loss`` on eval steps); a
  preference run's also carry ``reward_margin``, ``reward_accuracy``, ``logp_chosen``, ``logp_rejected`` (train
  steps) and their ``eval_`` forms (held-out pairs, at each evaluation), an ORPO run's also ``nll_loss`` and
  ``log_odds_ratio`` and their ``eval_`` forms: float | None each (engine.callbacks.PREFERENCE_LOGS)
- ``{"event": "validation", "step": int, "metric": str, "score": float, "best_score": float, "best_step": int,
  "samples": [{"prompt", "answer", "reference"}], "seconds": float, "next_in": int, "time": float}`` (the
  validation slice scored on the task's metric; engine.validation), kept in metrics.jsonl under ``validation``
- ``{"event": "end", "status": "completed" | "stopped" | "failed", "step": int, "message": str,
  "time": float}``

A listener is any callable taking the dict. Listeners must be quick: they run on the
training thread between steps.
"""

from __future__ import annotations

from typing import Any, Callable

Event = dict[str, Any]
Listener = Callable[[Event], None]
