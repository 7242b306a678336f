"""Which approach to adopt: prompting, RAG, fine-tuning or both, with the arithmetic shown.

A system passes when it meets the bar: the user's ``--threshold``, or without one, within ``TIE``
of the best score (closer than that is within the noise of a small held-out set). Among the systems
that pass, the one that costs least over ``payback_days`` of requests at ``requests_per_day`` is
recommended, counting a fine-tuned system's training cost once and every system's prompt tokens per
request; on equal cost the simpler approach wins (prompting, then RAG, then fine-tuning, then both).
So fine-tuning is recommended over a prompt that passes only when its shorter prompts pay its
training back within the payback period, and the break-even says after how many requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from ..runs import FINE_TUNED
from .systems import adapted, approach

TIE = 0.05
"""Without a threshold, a score within this of the best passes (one row in 20)."""
PAYBACK_DAYS = 30
REQUESTS_PER_DAY = 1000

PROMPTING, USE_RAG, FINE_TUNE, BOTH, NOTHING = (
    "prompting is enough", "use RAG", "fine-tune", "fine-tune and use RAG", "nothing passes")
OUTCOME = {"prompting": PROMPTING, "RAG": USE_RAG, "fine-tuning": FINE_TUNE, "fine-tuning and RAG": BOTH}
SIMPLICITY = ("prompting", "RAG", "fine-tuning", "fine-tuning and RAG")


@dataclass(frozen=True)
class Bar:
    """The score a system must reach on ``metric`` to be good enough."""

    metric: str
    value: float
    strict: bool
    """``>`` rather than ``>=``."""
    given: bool
    """The user's threshold (False: the default, within TIE of the best)."""

    def passes(self, score: float) -> bool:
        return score > self.value if self.strict else score >= self.value - 1e-12

    def text(self) -> str:
        op = ">" if self.strict else ">="
        how = "" if self.given else f" (no --threshold: within {TIE:g} of the best)"
        return f"{self.metric}{op}{self.value:.2f}{how}"


@dataclass(frozen=True)
class Costs:
    """What decides between systems that pass, besides their scores."""

    training_usd: float
    """A fine-tuned system's one-off cost (TrainingCost.basis_usd)."""
    usd_per_million_tokens: float
    requests_per_day: int = REQUESTS_PER_DAY
    payback_days: int = PAYBACK_DAYS

    def usd(self, tokens: float) -> float:
        """What serving ``tokens`` costs."""
        return tokens * self.usd_per_million_tokens / 1e6


@dataclass(frozen=True)
class BreakEven:
    """When a fine-tuned system's shorter prompts have paid for its training, against ``against``."""

    system: str
    against: str
    tokens_saved: float
    latency_saved_s: float
    saving_usd: float
    """Per request."""
    training_usd: float
    requests: int | None
    """None: it never pays back (it saves no prompt tokens)."""
    requests_per_day: int

    @property
    def days(self) -> float | None:
        return None if self.requests is None else self.requests / self.requests_per_day

    def text(self) -> str:
        if self.requests is None or self.days is None:
            more = ("saves no prompt tokens" if self.tokens_saved == 0 else
                    f"needs {-self.tokens_saved:,.0f} more prompt tokens per request")
            return (f"{self.system} {more} against {self.against}: its training ({usd(self.training_usd)}) never "
                    "pays back in prompt costs")
        saved = (f"{self.system} saves {self.tokens_saved:,.0f} prompt tokens ({usd(self.saving_usd)}) and "
                 f"{self.latency_saved_s:+.2f} s per request against {self.against}")
        return (f"{saved}; fine-tuning pays for itself after {round_up(self.requests):,} requests "
                f"({days_text(self.days)} at {self.requests_per_day:,}/day)")


def break_even(system: str, against: str, tokens_saved: float, latency_saved_s: float, costs: Costs) -> BreakEven:
    """Training cost divided by the saving per request, rounded up to whole requests."""
    saving = costs.usd(tokens_saved)
    requests = math.ceil(costs.training_usd / saving) if saving > 0 else None
    return BreakEven(system, against, tokens_saved, latency_saved_s, saving, costs.training_usd, requests,
                     costs.requests_per_day)


def usd(amount: float) -> str:
    """Dollars to two significant figures however small: a request's saving is a millionth of a dollar."""
    if amount >= 0.995 or amount == 0:
        return f"${amount:,.2f}"
    return f"${amount:.{1 - math.floor(math.log10(amount))}f}"


def round_up(n: int) -> int:
    """Two significant figures, up: a break-even is not reached before it."""
    if n < 100:
        return n
    step = 10 ** (len(str(n)) - 2)
    return -(-n // step) * step


def days_text(days: float) -> str:
    if days < 1:
        return f"{days * 24:.0f} hours" if days * 24 >= 1 else "under an hour"
    return f"{math.ceil(days):,} day{'s' if math.ceil(days) != 1 else ''}"


@dataclass(frozen=True)
class SystemFigures:
    """What the decision reads of one system: its score and its prompt's cost."""

    score: float
    prompt_tokens: float
    latency_s: float


@dataclass(frozen=True)
class Recommendation:
    outcome: str
    """One of PROMPTING, USE_RAG, FINE_TUNE, BOTH or NOTHING."""
    system: str | None
    """The recommended system (None when nothing passes)."""
    passing: tuple[str, ...]
    break_even: BreakEven | None
    lines: tuple[str, ...]
    """The reasons, in numbers; the last line is the recommendation."""

    @property
    def text(self) -> str:
        return "; ".join(self.lines)

    @property
    def headline(self) -> str:
        """The recommendation alone: "fine-tune (fine-tuned)", "nothing passes: ..."."""
        return f"{self.outcome} ({self.system})" if self.system else self.lines[-1]

    def noted(self, notes: tuple[str, ...]) -> "Recommendation":
        """With ``notes`` (what else the evaluation measured) before the recommendation, the last line."""
        return replace(self, lines=(*self.lines[:-1], *notes, self.lines[-1])) if notes else self


def recommend(figures: Mapping[str, SystemFigures], bar: Bar, costs: Costs, advice: str | None = None) -> Recommendation:
    """The recommendation for these systems' figures (see the module's docstring); ``advice`` (whether
    more steps or data would help) is added when fine-tuning does not pass."""
    order = sorted(figures, key=lambda s: -figures[s].score)
    passing = tuple(s for s in order if bar.passes(figures[s].score))
    failing = [s for s in order if s not in passing]
    lines = [f"bar {bar.text()}: " + "; ".join(
        part for part in (
            "passes: " + ", ".join(f"{s} {figures[s].score:.2f}" for s in passing) if passing else "",
            "fails: " + ", ".join(f"{s} {figures[s].score:.2f}" for s in failing) if failing else "",
        ) if part)]
    if not passing:
        if advice:
            lines.append(advice)
        lines.append(f"{NOTHING}: no system reaches {bar.metric} {bar.value:.2f}")
        return Recommendation(NOTHING, None, (), None, tuple(lines))

    def total(system: str) -> tuple[float, int, float]:
        trained = costs.training_usd if adapted(system) else 0.0
        serving = costs.usd(figures[system].prompt_tokens) * costs.requests_per_day * costs.payback_days
        return round(trained + serving, 12), SIMPLICITY.index(approach(system)), -figures[system].score

    chosen = min(passing, key=total)
    untrained = [s for s in passing if not adapted(s)]
    cheapest_untrained = min(untrained, key=lambda s: figures[s].prompt_tokens, default=None)
    found: BreakEven | None = None
    if adapted(chosen):
        against = cheapest_untrained or min((s for s in figures if not adapted(s)),
                                             key=lambda s: -figures[s].score, default=None)
        if cheapest_untrained is None:
            lines.append(f"no system without fine-tuning passes{f' (best: {against})' if against else ''}")
        if against is not None:
            found = _break_even(chosen, against, figures, costs)
            lines.append(found.text() + ("" if cheapest_untrained else f" (though {against} fails the bar)"))
    else:
        tuned = [s for s in passing if adapted(s)]
        if tuned:
            found = _break_even(min(tuned, key=lambda s: figures[s].prompt_tokens), chosen, figures, costs)
            lines.append(found.text() + f", beyond the {costs.payback_days}-day payback"
                         if found.requests is not None else found.text())
        elif advice and FINE_TUNED in figures:
            lines.append(f"{FINE_TUNED} fails the bar; {advice}")
    lines.append(f"recommendation: {OUTCOME[approach(chosen)]} ({chosen})")
    return Recommendation(OUTCOME[approach(chosen)], chosen, passing, found, tuple(lines))


def _break_even(tuned: str, against: str, figures: Mapping[str, SystemFigures], costs: Costs) -> BreakEven:
    return break_even(tuned, against, figures[against].prompt_tokens - figures[tuned].prompt_tokens,
                      figures[against].latency_s - figures[tuned].latency_s, costs)


def default_bar(metric: str, scores: Mapping[str, float]) -> Bar:
    """Within TIE of the best score (but above zero: a system that gets nothing right never passes)."""
    return Bar(metric, max(max(scores.values()) - TIE, 1e-9), False, False)

