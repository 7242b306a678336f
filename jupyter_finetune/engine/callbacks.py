"""The bridge from the HF Trainer to our events: one dict per log step, and the stop request."""

from __future__ import annotations

import resource
import sys
import threading
import time
from typing import Any, Callable

from transformers import TrainerCallback

from .events import Event, Listener

PREFERENCE_LOGS = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
                   "logps/chosen": "logp_chosen", "logps/rejected": "logp_rejected"}
"""What a preference run's log events carry, TRL's name -> ours (DPOTrainer and ORPOTrainer, TRL 0.27 to 0.29,
name them alike): the mean margin between the chosen and the rejected answer's rewards, the share of pairs whose
chosen answer gets the higher reward, and the policy's log-probability of each answer (DPO: summed over the
answer's tokens; ORPO: a mean per token). Held-out pairs' come as ``eval_`` + TRL's name -> ``eval_`` + ours."""
ORPO_LOGS = {"nll_loss": "nll_loss", "log_odds_ratio": "log_odds_ratio"}
"""ORPO's own terms: the chosen answers' cross-entropy (its SFT part) and the mean log-sigmoid of the odds ratio."""

CHECKPOINT_EVERY_S = 10 * 60.0
"""Without --save-steps, a checkpoint every 10 minutes of training: a lost VM or a killed kernel costs at
most that much work, whatever the model's step time (a T4's 8B step and a CPU's 135M step differ 1000x)."""


def memory_gb() -> float:
    """Peak GPU memory allocated, or the process's peak resident memory on CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak / 1e6


class EventCallback(TrainerCallback):
    """Sends start/log events to listeners and turns a stop request into a clean stop at a step end."""

    def __init__(self, run: str, listeners: list[Listener], stop: threading.Event, config: dict[str, Any],
                 between_steps: Callable[[], None] = lambda: None):
        self.run = run
        self.between_steps = between_steps  # lets an awaiting kernel handle messages, e.g. a Stop click
        self.listeners = listeners
        self.stop = stop
        self.config = config
        self._t0 = time.time()
        self._step0 = 0
        self._tokens_per_s = 0.0
        method = config.get("method", "sft")
        names = {**PREFERENCE_LOGS, **ORPO_LOGS} if method == "orpo" else PREFERENCE_LOGS if method == "dpo" else {}
        self._extra = {**names, **{f"eval_{k}": f"eval_{v}" for k, v in names.items()}}
        """TRL's names -> ours of what this method's events add: every key in every event, None where not logged."""

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._step0 = time.time(), state.global_step
        self.emit({"event": "start", "run": self.run, "max_steps": state.max_steps, "step": state.global_step,
                   "epochs": args.num_train_epochs, "config": self.config, "time": self._t0})

    def on_step_end(self, args, state, control, **kwargs):
        self.between_steps()
        if self.stop.is_set():
            control.should_training_stop = True
            control.should_save = True  # a checkpoint at the stop step, so --resume continues from here

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs and "eval_loss" not in logs:
            return
        now = time.time()
        elapsed = max(now - self._t0, 1e-9)
        done = state.global_step - self._step0
        if "num_tokens" in logs and done:
            # TRL's num_tokens counts non-padding tokens since step 0; a resumed run starts mid-way.
            self._tokens_per_s = float(logs["num_tokens"]) * done / max(state.global_step, 1) / elapsed
        remaining = state.max_steps - state.global_step
        self.emit({
            "event": "log", "step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch or 0.0,
            "loss": logs.get("loss"), "eval_loss": logs.get("eval_loss"), "lr": logs.get("learning_rate"),
            "tokens_per_s": self._tokens_per_s, "memory_gb": memory_gb(),
            "eta_s": elapsed / done * remaining if done else None, "time": now,
            **{ours: logs.get(theirs) for theirs, ours in self._extra.items()},
        })


class CheckpointTimer(TrainerCallback):
    """A checkpoint once ``every_s`` seconds have passed since the last one (or the start)."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self._last >= self.every_s:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        self._last = time.monotonic()
