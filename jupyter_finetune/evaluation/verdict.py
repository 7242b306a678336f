"""The verdict: which systems pass the bar, and which approach to adopt (evaluation/decision.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidValue
from ..runs import FINE_TUNED
from .compare import Comparison
from .decision import Bar, Costs, Recommendation, SystemFigures, default_bar, recommend

_THRESHOLD = re.compile(r"\s*([A-Za-z_][\w.:]*)\s*(>=|>)\s*([0-9]*\.?[0-9]+)\s*")


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str, default_metric: str) -> "Threshold":
        """``json_fields>=0.9``, or a bare number for the first metric (``0.9`` means ``>= 0.9``)."""
        try:
            return cls(default_metric, ">=", float(text))
        except ValueError:
            pass
        match = _THRESHOLD.fullmatch(text)
        if not match:
            raise InvalidValue(f"threshold {text!r}: write METRIC>=X such as json_fields>=0.9, or just 0.9 "
                               f"for {default_metric}")
        return cls(match[1], match[2], float(match[3]))

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def bar(self) -> Bar:
        return Bar(self.metric, self.value, self.op == ">", True)


@dataclass(frozen=True)
class Verdict:
    metric: str
    passes: bool | None
    """Whether fine-tuned meets the bar (None when it was given no threshold)."""
    recommendation: Recommendation

    @property
    def text(self) -> str:
        return self.recommendation.text


def decide(comparison: Comparison, threshold: Threshold | None = None, costs: Costs | None = None,
           advice: str | None = None, notes: tuple[str, ...] = ()) -> Verdict:
    """The scores against the bar, the break-even and the recommendation, in words: e.g. "bar
    json_fields>=0.80: passes: fine-tuned 0.86; fails: retrieval 0.71, ...; fine-tuned saves 412 prompt
    tokens ...; recommendation: fine-tune (fine-tuned)". ``costs`` default to no training cost and
    the smallest models' serving price; ``advice`` says whether more steps or data would help; ``notes``
    (a preference run's accuracy on held-out pairs, its answers' length) come before the recommendation."""
    metric = threshold.metric if threshold else comparison.metrics[0]
    if metric not in comparison.metrics:
        raise InvalidValue(f"threshold metric {metric!r} is not among the metrics scored "
                           f"({', '.join(comparison.metrics)}); add it with --metric")
    systems = comparison.systems
    figures = {name: SystemFigures(s.mean(metric), s.prompt_tokens, s.latency_s) for name, s in systems.items()}
    bar = threshold.bar() if threshold else default_bar(metric, {n: f.score for n, f in figures.items()})
    if costs is None:
        costs = Costs(0.0, comparison.usd_per_million_tokens or 0.0)
    found = recommend(figures, bar, costs, advice).noted(notes)
    passes = bar.passes(figures[FINE_TUNED].score) if threshold and FINE_TUNED in figures else None
    return Verdict(metric, passes, found)
