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


def answer_perplexity(model: Any, tokenizer: Any, prompt: list[dict[str, str]], answer: str) -> float:
    """exp(mean negative log-likelihood) of the answer's tokens given the prompt."""
    import torch

    context = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
    labels = ids.clone()
    labels[:, :len(context_ids)] = -100
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=labels).loss
    return math.exp(loss.item())


def check_forgetting(model: Any, tokenizer: Any, system: str | None = None) -> Forgetting:
    """Perplexities with the adapter off (base) and on, for the packaged general prompts."""
    items = general_prompts()
    head = [{"role": "system", "content": system}] if system else []
    prompts = [head + [{"role": "user", "content": it["prompt"]}] for it in items]
    with model.disable_adapter():
        base = [answer_perplexity(model, tokenizer, p, it["answer"]) for p, it in zip(prompts, items)]
    tuned = [answer_perplexity(model, tokenizer, p, it["answer"]) for p, it in zip(prompts, items)]
    return Forgetting([it["prompt"] for it in items], base, tuned)
