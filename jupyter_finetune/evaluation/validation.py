"""The scorer of validation during training: the slice's answers generated and scored as %ft_eval would.

The engine calls it with the model it is training (engine.validation); the metric is the first of
those %ft_eval chooses for these answers (metrics.default_metrics), the one its verdict uses.
"""

from __future__ import annotations

from typing import Any

from ..data.formats import Example
from ..engine.validation import ValidationScore, Validator
from .compare import answer_budget, metric_rows
from .generate import generate_timed
from .metrics import default_metrics, resolve_metric, score

SAMPLES = 3
"""Answers shown beside the score."""


def slice_validator(rows: list[Example]) -> Validator:
    """A Validator for ``rows`` (held out from training): greedy answers, their mean score, a few samples."""
    name, metric = resolve_metric(default_metrics(rows)[0])
    prompts = [ex.messages[:-1] for ex in rows]
    references = [ex.messages[-1]["content"] for ex in rows]

    def validate(model: Any, tokenizer: Any) -> ValidationScore:
        generation = generate_timed(model, tokenizer, prompts, max_new_tokens=answer_budget(tokenizer, rows))
        scores = [score(name, metric, answer, ref, row)
                  for answer, ref, row in zip(generation.answers, references, metric_rows(rows))]
        samples = tuple({"prompt": next((m["content"] for m in reversed(p) if m["role"] == "user"), ""),
                         "answer": answer, "reference": ref}
                        for p, answer, ref in list(zip(prompts, generation.answers, references))[:SAMPLES])
        return ValidationScore(name, sum(scores) / len(scores), samples)

    return validate
