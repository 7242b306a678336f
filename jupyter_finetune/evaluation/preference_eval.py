"""What an evaluation adds for preference data: does each model rank chosen above rejected, and how long
are the answers.

Preference accuracy on the held-out pairs (evaluation/preference.py's measure) for the base (adapters
off), the run the evaluated run started from (``--from``, its adapter loaded beside the run's own) and
the run itself: one model in memory, switched between adapters. Beside it, the mean length of every
system's generated answers and of the chosen and rejected answers, because preference tuning is known to
learn length: a score that rose only because the answers grew shows as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..data.formats import Example
from ..runs import FINE_TUNED
from .compare import Outputs
from .loading import START_ADAPTER, LoadedRun, switched_to
from .preference import PreferenceScore, preference_score
from .systems import BASE

LONGER = 1.5
"""Fine-tuned answers with this many times the mean tokens of the base's (or the starting run's), or more,
are "much longer": the evaluation then says that part of a gain may be length."""
CHOSEN, REJECTED = "chosen (reference)", "rejected"
"""The length table's rows for the data's own answers, after the systems'."""


@dataclass(frozen=True)
class Length:
    """The mean length of a set of answers: tokens of the run's tokenizer, and words (split on white space)."""

    tokens: float
    words: float

    @classmethod
    def of(cls, tokenizer: Any, answers: list[str]) -> "Length":
        if not answers:
            return cls(0.0, 0.0)
        tokens = [len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]]
        return cls(sum(tokens) / len(answers), sum(len(a.split()) for a in answers) / len(answers))


@dataclass(frozen=True)
class PreferenceEval:
    """Preference accuracy per model, and the answers' lengths, of one evaluation on preference pairs."""

    method: str
    """How the evaluated run trained (dpo, orpo, sft): its label in the accuracy line."""
    scores: Mapping[str, PreferenceScore]
    """Per system, in the order base, the starting run (``systems.started_from``), fine-tuned."""
    lengths: Mapping[str, Length]
    """Per system that generated answers (the comparison's order), then CHOSEN and REJECTED."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """What the scores were measured with (adapters, split, limit): a later evaluation with the same reuses them."""

    @property
    def pairs(self) -> int:
        return next(iter(self.scores.values())).pairs

    def accuracy(self) -> dict[str, float]:
        return {name: s.accuracy for name, s in self.scores.items()}

    def label(self, system: str) -> str:
        return f"{system} ({self.method})" if system == FINE_TUNED else system

    def accuracy_line(self) -> str:
        """``preference accuracy on 40 held-out pairs: base 0.50 -> sft (tickets-1) 0.62 -> fine-tuned (dpo) 0.93``."""
        steps = " -> ".join(f"{self.label(name)} {s.accuracy:.2f}" for name, s in self.scores.items())
        return f"preference accuracy on {self.pairs} held-out pairs: {steps}"

    def length_note(self) -> str | None:
        """One sentence when the fine-tuned answers have at least LONGER times the mean tokens of the base's or
        the starting run's (the systems a gain is measured from); None otherwise."""
        tuned = self.lengths.get(FINE_TUNED)
        if tuned is None:
            return None
        longer = [(name, length) for name, length in self.lengths.items()
                  if name in self.scores and name != FINE_TUNED
                  and tuned.tokens > length.tokens and tuned.tokens >= LONGER * length.tokens]
        if not longer:
            return None
        than = " and ".join(f"{name}'s ({tuned.tokens:.1f} vs {length.tokens:.1f} tokens"
                            + (f", {tuned.tokens / length.tokens:.1f}x)" if length.tokens else ")")
                            for name, length in longer)
        return (f"fine-tuned answers are much longer than {than}: part of any gain may be length rather than "
                f"content (chosen answers average {self.lengths[CHOSEN].tokens:.1f} tokens, rejected "
                f"{self.lengths[REJECTED].tokens:.1f})")

    def notes(self) -> tuple[str, ...]:
        """What the verdict says of it: the accuracy line, and the length sentence when there is one."""
        note = self.length_note()
        return (self.accuracy_line(), *([note] if note else []))

    def score_rows(self) -> list[dict[str, Any]]:
        return [{"system": self.label(name), "accuracy": s.accuracy, "chosen logp": s.chosen_logp,
                 "rejected logp": s.rejected_logp, "margin": s.margin} for name, s in self.scores.items()]

    def length_rows(self) -> list[dict[str, Any]]:
        return [{"answers": name, "tokens": length.tokens, "words": length.words}
                for name, length in self.lengths.items()]

    def text(self) -> str:
        return "\n".join([f"preference accuracy on {self.pairs} held-out pairs (chosen's mean log-prob per token "
                          "above rejected's):", table_text(self.score_rows()),
                          "mean answer length:", table_text(self.length_rows())])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "settings": dict(self.settings),
                "scores": {name: s.to_dict() for name, s in self.scores.items()},
                "lengths": {name: {"tokens": x.tokens, "words": x.words} for name, x in self.lengths.items()}}


def table_text(rows: list[dict[str, Any]]) -> str:
    """Rows of one text column then numbers, aligned; numbers to two decimals (lengths to one)."""
    first, *columns = rows[0]
    width = max(len(first), *(len(r[first]) for r in rows))
    lines = [f"{first:<{width}}  " + "  ".join(f"{c:>13}" for c in columns)]
    for r in rows:
        lines.append(f"{r[first]:<{width}}  " + "  ".join(f"{number(c, r[c]):>13}" for c in columns))
    return "\n".join(lines)


def number(column: str, value: float) -> str:
    return f"{value:.1f}" if column in ("tokens", "words") else f"{value:.2f}"


def score_systems(loaded: LoadedRun, pairs: list[Example], start: str | None) -> dict[str, PreferenceScore]:
    """Preference scores of the base, the starting run's adapter (system ``start``, loaded as START_ADAPTER)
    and the run's own, the one loaded model switched to each in turn."""
    model = loaded.model
    adapters = {BASE: None, **({start: START_ADAPTER} if start else {}), FINE_TUNED: model.active_adapter}
    scores = {}
    for system, adapter in adapters.items():
        with switched_to(model, adapter):
            scores[system] = preference_score(model, loaded.tokenizer, pairs)
    return scores


def lengths(tokenizer: Any, outputs: Outputs, systems: list[str], pairs: list[Example]) -> dict[str, Length]:
    """Mean length of each system's answers, then of the chosen (the references) and the rejected answers."""
    found = {name: Length.of(tokenizer, outputs.generations[name].answers) for name in systems}
    return {**found, CHOSEN: Length.of(tokenizer, outputs.references),
            REJECTED: Length.of(tokenizer, [ex.rejected or "" for ex in pairs])}


def saved_scores(saved: Any, settings: Mapping[str, Any]) -> dict[str, PreferenceScore] | None:
    """The scores a saved evaluation kept (``PreferenceEval.to_dict``), if measured with ``settings``."""
    if not isinstance(saved, dict) or saved.get("settings") != dict(settings):
        return None
    try:
        scores = {str(name): PreferenceScore.from_dict(s) for name, s in saved["scores"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return scores or None
