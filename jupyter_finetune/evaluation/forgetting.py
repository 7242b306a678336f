"""Did fine-tuning cost general ability? Perplexity on reference answers to general prompts.

A dozen short general prompts ship with the package; each system's perplexity of the reference
answers (the answer tokens only, after the model's chat template) is compared. A LoRA that
overwrote general behaviour shows as a much higher perplexity after fine-tuning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from .answer_scores import answer_logps

RATIO_FLAG = 1.5
"""A prompt is flagged when its perplexity grew by more than this factor."""
MEAN_FLAG = 1.2
"""The check fails when the mean perplexity grew by more than this factor."""


@dataclass(frozen=True)
class Forgetting:
    prompts: list[str]
    base: list[float]
    fine_tuned: list[float]

    @property
    def ratio(self) -> float:
        return _mean(self.fine_tuned) / _mean(self.base)

    @property
    def flagged(self) -> list[str]:
        return [p for p, b, f in zip(self.prompts, self.base, self.fine_tuned) if f > RATIO_FLAG * b]

    @property
    def regressed(self) -> bool:
        return self.ratio > MEAN_FLAG

    def text(self) -> str:
        head = (f"forgetting check: general-prompt perplexity {_mean(self.base):.2f} (base) -> "
                f"{_mean(self.fine_tuned):.2f} (fine-tuned), x{self.ratio:.2f}")
        verdict = ("a large regression: the adapter changed general behaviour; try fewer steps, a lower --lr "
                   "or --rank, or mix general examples into the data" if self.regressed else "no large regression")
        flagged = f"; {len(self.flagged)} of {len(self.prompts)} prompts over x{RATIO_FLAG:g}" if self.flagged else ""
        return f"{head}: {verdict}{flagged}"

    def to_dict(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "base": self.base, "fine_tuned": self.fine_tuned}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def general_prompts() -> list[dict[str, str]]:
    return json.loads(files(__package__).joinpath("general_prompts.json").read_text(encoding="utf-8"))


def _perplexities(model: Any, tokenizer: Any, scored: list[tuple[list[dict[str, str]], str]]) -> list[float]:
    """exp(mean negative log-likelihood) of each answer's tokens given its prompt."""
    return [math.exp(-score.mean) for score in answer_logps(model, tokenizer, scored)]


def check_forgetting(model: Any, tokenizer: Any, system: str | None = None) -> Forgetting:
    """Perplexities with the adapter off (base) and on, for the packaged general prompts."""
    items = general_prompts()
    head = [{"role": "system", "content": system}] if system else []
    scored = [(head + [{"role": "user", "content": it["prompt"]}], it["answer"]) for it in items]
    with model.disable_adapter():
        base = _perplexities(model, tokenizer, scored)
    tuned = _perplexities(model, tokenizer, scored)
    return Forgetting([it["prompt"] for it in items], base, tuned)
