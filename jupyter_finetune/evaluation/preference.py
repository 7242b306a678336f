"""Does a model rank the chosen answer above the rejected one? Preference accuracy on held-out pairs.

A pair counts as ranked right when the chosen answer's mean log-probability per token, given the
prompt, is above the rejected answer's. The mean, not the sum: a sum favours whichever answer is
shorter, so a base model would look as if it preferred concise answers when it only preferred fewer
tokens. The same measure scores the base, the run a preference run started from, and the run, so
their numbers compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.formats import Example
from .answer_scores import answer_logps


@dataclass(frozen=True)
class PreferenceScore:
    """One model's ranking of held-out pairs: how often chosen beat rejected, and the mean log-probs."""

    accuracy: float
    pairs: int
    chosen_logp: float
    """Mean over pairs of the chosen answer's mean log-probability per token."""
    rejected_logp: float

    @property
    def margin(self) -> float:
        return self.chosen_logp - self.rejected_logp

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "pairs": self.pairs, "chosen_logp": self.chosen_logp,
                "rejected_logp": self.rejected_logp}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "PreferenceScore":
        return cls(float(saved["accuracy"]), int(saved["pairs"]), float(saved["chosen_logp"]),
                   float(saved["rejected_logp"]))


def preference_score(model: Any, tokenizer: Any, pairs: list[Example]) -> PreferenceScore:
    """``model`` as it is now (adapter on or off, as the caller set it) on every pair."""
    if not pairs or any(ex.rejected is None for ex in pairs):
        raise ValueError("preference_score needs preference pairs (examples with a rejected answer)")
    answers = [(ex.messages[:-1], ex.messages[-1]["content"]) for ex in pairs]
    answers += [(ex.messages[:-1], ex.rejected or "") for ex in pairs]
    means = [score.mean for score in answer_logps(model, tokenizer, answers)]
    chosen, rejected = means[:len(pairs)], means[len(pairs):]
    wins = sum(c > r for c, r in zip(chosen, rejected))
    return PreferenceScore(wins / len(pairs), len(pairs), sum(chosen) / len(pairs), sum(rejected) / len(pairs))
