"""Few-shot prompts: is fine-tuning needed at all, or do a few examples in the prompt do?

Shots come from the training split only (never the held-out rows being scored), picked once
with a seed, and are placed as earlier user/assistant turns after the system prompt, the way a
practitioner would write a few-shot chat prompt.
"""

from __future__ import annotations

import random

from ..errors import InvalidValue
from ..data.formats import Example

Messages = list[dict[str, str]]


def pick_shots(train: list[Example], k: int, seed: int = 0) -> list[Example]:
    """``k`` training examples, the same ones for every held-out row."""
    if k < 0:
        raise InvalidValue(f"--shots must be 0 or more (got {k})")
    if k > len(train):
        raise InvalidValue(f"--shots {k} but the training split has only {len(train)} rows")
    return random.Random(seed).sample(train, k)


def with_shots(prompt: Messages, shots: list[Example]) -> Messages:
    """``prompt`` (ending with the user's turn) preceded by the shots' turns, after any system prompt."""
    head = prompt[:1] if prompt and prompt[0]["role"] == "system" else []
    turns = [m for shot in shots for m in shot.messages if m["role"] != "system"]
    return head + turns + prompt[len(head):]
