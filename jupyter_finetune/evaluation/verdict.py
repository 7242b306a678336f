"""The verdict: does the fine-tuned model pass the bar, and was fine-tuning needed at all?"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from ..errors import InvalidValue
from .compare import Comparison

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_THRESHOLD = re.compile(r"\s*([A-Za-z_][\w.:]*)\s*(>=|<=|>|<)\s*([0-9]*\.?[0-9]+)\s*")


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

    def passes(self, value: float) -> bool:
        return _OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class Verdict:
    metric: str
    passes: bool | None
    """Whether fine-tuned meets the threshold (None when no threshold was given)."""
    beats_fewshot: bool | None
    """Whether fine-tuned scores above few-shot prompting (None when few-shot was not run)."""
    tokens_saved: float | None
    """Prompt tokens per request that few-shot needs on top of the fine-tuned model's."""
    text: str


def decide(comparison: Comparison, threshold: Threshold | None = None) -> Verdict:
    """Plain words, e.g. "fine-tuned passes json_fields>=0.9 (0.94); few-shot reaches 0.41 with 612 more
    prompt tokens per request"."""
    metric = threshold.metric if threshold else comparison.metrics[0]
    if metric not in comparison.metrics:
        raise InvalidValue(f"threshold metric {metric!r} is not among the metrics scored "
                           f"({', '.join(comparison.metrics)}); add it with --metric")
    systems = comparison.systems
    tuned = systems["fine-tuned"].mean(metric)
    passes = threshold.passes(tuned) if threshold else None
    if threshold:
        parts = [f"fine-tuned {'passes' if passes else 'fails'} {threshold} ({tuned:.2f})"]
    else:
        parts = [f"fine-tuned reaches {metric} {tuned:.2f}"]
    beats = saved = None
    if "fewshot" in systems:
        few = systems["fewshot"]
        shots = comparison.outputs.settings["shots"]
        saved = few.prompt_tokens - systems["fine-tuned"].prompt_tokens
        beats = tuned > few.mean(metric)
        parts.append(f"few-shot ({shots} examples) reaches {few.mean(metric):.2f} with {saved:.0f} more prompt "
                     f"tokens per request")
        if not beats:
            parts.append("few-shot prompting does as well or better: fine-tuning may not be needed")
        elif threshold and threshold.passes(few.mean(metric)):
            parts.append("few-shot also passes the threshold, at the cost of the longer prompt")
    if "base" in systems:
        parts.append(f"base zero-shot reaches {systems['base'].mean(metric):.2f}")
    return Verdict(metric, passes, beats, saved, "; ".join(parts))
