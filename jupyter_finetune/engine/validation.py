"""Validation during training on the task's own metric: answers generated for a slice of the training
split, scored as %ft_eval would score them; the best adapter kept; early stopping.

The loss says little about whether answers are right (a JSON answer with one wrong field costs one
token's loss), so the run is judged as the final evaluation will judge it. The scoring itself
(generation and metrics) lives in ``evaluation``, above this layer: the engine takes it as a
``Validator``. HF's ``EarlyStoppingCallback`` is not used because it requires ``load_best_model_at_end``,
which ties a full checkpoint to every evaluation; here only the adapter is kept, and checkpoints stay
on their own timer (callbacks.CheckpointTimer).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

from transformers import TrainerCallback

from ..models.oom import free_memory
from ..runs import Run
from ..runs.records import KeptAdapter
from ..data.formats import Example
from .events import Event

BUDGET = 0.10
"""The share of training time validation may take; the interval widens to keep it there."""
VALIDATIONS = 10
"""Validations a run aims at when an epoch is longer than a tenth of the run."""


@dataclass(frozen=True)
class ValidationScore:
    """One validation: the slice's mean score and a few answers to show beside the loss."""

    metric: str
    score: float
    samples: tuple[dict[str, str], ...]
    """Up to three ``{"prompt", "answer", "reference"}``: the last user turn, the model's answer, the row's."""


Validator = Callable[[Any, Any], ValidationScore]
"""(model, tokenizer) -> the score of the validation slice it was made for."""
MakeValidator = Callable[[list[Example]], Validator]
"""What makes the Validator of a validation slice (evaluation.validation.slice_validator)."""


@dataclass(frozen=True)
class ValidationPlan:
    """What a job validates with: the slice's scorer, how often at first, and whether it may stop early."""

    validate: Validator
    every: int
    """Optimizer steps between validations at the start (validation_every)."""
    patience: int | None
    """Validations without a better score before stopping; None: never stop early."""


def validation_every(steps_per_epoch: int, max_steps: int) -> int:
    """Every epoch, or every tenth of the run when that comes sooner (a run of one long epoch)."""
    return max(1, min(steps_per_epoch, math.ceil(max_steps / VALIDATIONS)))


class ValidationCallback(TrainerCallback):
    """Asks the Trainer for an evaluation (the validation slice's loss) every ``plan.every`` steps and at the
    last step; at each, scores generated answers, keeps the adapter when the score is the best so far (on
    a tie, the later one), and stops training after ``plan.patience`` validations without a better one.

    The interval widens when a validation costs more than BUDGET of the training time between two.
    ``stopped_early`` holds the reason once it has stopped training.
    """

    def __init__(self, plan: ValidationPlan, run: Run, tokenizer: Any, generating: Callable[[Any], ContextManager[Any]],
                 save: Callable[[Any], None], emit: Callable[[Event], None]):
        self.plan, self.run, self.tokenizer = plan, run, tokenizer
        self.generating, self.save, self.emit = generating, save, emit
        self.every = plan.every
        self.best = run.kept_adapter()  # a resumed run goes on comparing with the best kept before
        self.since_best = 0
        self.reached = self.best.step if self.best else 0
        """The step where the best score was first reached (a tie since moves ``best`` to a later step)."""
        self.validations = 0
        self.stopped_early: str | None = None
        self.failed: str | None = None
        """Why validation stopped for the rest of the run, if it failed."""
        self._last_step = 0
        self._train_s = 0.0
        self._train_steps = 0
        self._step_began = 0.0
        self._asked_at: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_step = state.global_step

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._train_s += time.perf_counter() - self._step_began
        self._train_steps += 1
        if self.failed:
            return
        last = state.global_step >= state.max_steps  # the Trainer has already set should_training_stop
        if control.should_training_stop and not last:  # a stop request: the user asked for the adapter now
            return
        if last or state.global_step - self._last_step >= self.every:
            control.should_evaluate = True
            self._asked_at = time.perf_counter()

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if self._asked_at is None:  # an evaluation this callback did not ask for
            return
        step = state.global_step
        try:
            with self.generating(model):
                result = self.plan.validate(model, self.tokenizer)
        except Exception as exc:  # a scorer that fails (a user metric, memory) must not cost the training
            self.failed = f"validation failed at step {step} ({type(exc).__name__}: {exc}), so training went on without it"
            self._asked_at = None
            free_memory()
            return
        self.validations += 1
        improved = self.best is None or result.score > self.best.score
        self.since_best = 0 if improved else self.since_best + 1
        if improved:
            self.reached = step
        if improved or result.score == self.best.score:  # a tie keeps the later, longer-trained adapter
            self.best = KeptAdapter(step, result.metric, result.score)
            self.run.keep_best_adapter(self.save, self.best)
        spent = time.perf_counter() - self._asked_at
        self._asked_at, self._last_step = None, step
        if self._train_steps:
            step_s = self._train_s / self._train_steps
            self.every = max(self.every, math.ceil(spent / (BUDGET * step_s)))
        self.emit({"event": "validation", "step": step, "metric": result.metric, "score": result.score,
                    "best_score": self.best.score, "best_step": self.best.step, "samples": list(result.samples),
                    "seconds": spent, "next_in": self.every, "time": time.time()})
        patience = self.plan.patience
        if patience is not None and self.since_best >= patience and step < state.max_steps:
            self.stopped_early = (f"stopped early at step {step}: {result.metric} did not improve on "
                                  f"{self.best.score:.3f} (reached at step {self.reached}) for {patience} validations")
            control.should_training_stop = True
