"""How long to train when the user gave neither --epochs nor --steps: a stated rule on the data's size.

The anchor is OpenAI's "auto" epochs: aim for a number of examples seen, clamped between a least and
a most number of passes, so that a small data set is seen many times and a large one once. Our
target is higher than OpenAI's (100 examples, 3 passes of anything larger): LoRA on a 0.1-8B model
learns a format from ~100 rows in 5-6 passes (bench/results/defaults-cpu2.json), and early stopping
on the validation score (engine.validation) ends a run that has stopped improving. Long examples
carry more tokens per pass, so a token budget lowers the passes for them, never below one.

It lives with the data because the data report prices the same length that %ft_plan and %ft_train
choose; the validation slice's size is here for the same reason (training counts without it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


EXAMPLES_SEEN = 800
"""The balanced preset's target (engine.config.PRESETS: quick half of it, thorough twice)."""
VALIDATION = 0.1
"""The share of the training rows set aside to validate on, by default (TrainConfig.validation)."""
MOST_VALIDATION_ROWS = 64
LEAST_EPOCHS = 1
MOST_EPOCHS = 20
TOKENS_SEEN = 4_000_000
"""Training tokens in all beyond which extra passes are dropped (about 2 h of an 8B QLoRA on a T4)."""


@dataclass(frozen=True)
class TrainingLength:
    """The passes and steps the rule chose, and the sentence that says why."""

    epochs: int
    steps: int
    reason: str


def steps_per_epoch(examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one pass over ``examples`` (a last, partial batch is a step too)."""
    return max(1, math.ceil(examples / (batch_size * grad_accum)))


def choose_length(examples: int, tokens_per_epoch: int, batch_size: int, grad_accum: int,
                  target: int = EXAMPLES_SEEN) -> TrainingLength:
    """Passes so that about ``target`` examples are seen (TrainConfig.examples_seen), in [LEAST_EPOCHS,
    MOST_EPOCHS], then lowered (to one at least) while they would exceed TOKENS_SEEN training tokens."""
    wanted = math.ceil(target / max(examples, 1))
    epochs = min(MOST_EPOCHS, max(LEAST_EPOCHS, wanted))
    why = f"so that the model sees each example {epochs} time{'s' if epochs != 1 else ''}"
    if wanted > MOST_EPOCHS:
        why += f" (the most passes; {target} examples seen would need {wanted})"
    elif wanted < LEAST_EPOCHS + 1 and examples > target:
        why = f"one pass: {examples:,} examples are more than the {target} to be seen in all"
    budget = max(LEAST_EPOCHS, TOKENS_SEEN // max(tokens_per_epoch, 1))
    if epochs > budget:
        why = (f"{budget} pass{'es' if budget != 1 else ''}: {tokens_per_epoch:,} tokens per pass, and more than "
               f"{TOKENS_SEEN:,} training tokens in all rarely helps (the rule would give {epochs})")
        epochs = budget
    steps = steps_per_epoch(examples, batch_size, grad_accum) * epochs
    return TrainingLength(epochs, steps, f"{examples:,} examples: {epochs} epoch{'s' if epochs != 1 else ''}, "
                                         f"{steps:,} steps, {why}")
