"""Would more steps or more data help? Read from the run's training and eval loss curves.

Eval loss on the validation slice still falling at the end means training stopped early in its
learning: more steps. Eval loss risen past its minimum while train loss kept falling is over-fitting:
more steps would not help, more (and more varied) data would. Level eval loss: neither is likely to
move the score much; a larger model, or different data, is the next thing to try.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RISE = 0.05
"""Eval loss this fraction above its minimum at the end counts as over-fitting."""
FALL = 0.02
"""Eval loss this fraction below its value two validations earlier counts as still falling."""

Trend = Literal["falling", "over-fitting", "level", "unknown"]


@dataclass(frozen=True)
class LearningTrend:
    trend: Trend
    text: str


def learning_trend(records: list[dict[str, Any]]) -> LearningTrend:
    """The trend of a run's curves (``Run.metrics()`` records), in a sentence with the losses."""
    evals = [(r["step"], float(r["eval_loss"])) for r in records if isinstance(r.get("eval_loss"), (int, float))]
    trains = [(r["step"], float(r["loss"])) for r in records if isinstance(r.get("loss"), (int, float))]
    if len(evals) >= 3:
        best_step, best = min(evals, key=lambda e: e[1])
        last_step, last = evals[-1]
        if last > best * (1 + RISE):
            fell = f" while train loss fell to {trains[-1][1]:.3f}" if trains and trains[-1][1] < best else ""
            return LearningTrend("over-fitting", f"eval loss rose from {best:.3f} (step {best_step}) to {last:.3f} "
                                 f"(step {last_step}){fell}: over-fitting, so more data, not more steps, looks likely "
                                 "to help")
        earlier = evals[-3][1]
        if last <= best and last < earlier * (1 - FALL):
            return LearningTrend("falling", f"eval loss was still falling at the end ({earlier:.3f} -> {last:.3f} "
                                 "over the last validations): more steps (--epochs) look likely to help")
        return LearningTrend("level", f"eval loss levelled off at {last:.3f}: more steps look unlikely to help; "
                             "more varied data or a larger model might")
    if len(trains) >= 4:
        quarter = max(1, len(trains) // 4)
        before = sum(v for _, v in trains[-2 * quarter:-quarter]) / quarter
        after = sum(v for _, v in trains[-quarter:]) / quarter
        if after < before * (1 - FALL):
            return LearningTrend("falling", f"train loss was still falling at the end ({before:.3f} -> {after:.3f}); "
                                 "with no eval loss to check for over-fitting, more steps may help")
        return LearningTrend("level", f"train loss levelled off at {after:.3f} (no eval loss was kept): more steps "
                             "look unlikely to help")
    return LearningTrend("unknown", "too few losses were logged to tell whether more steps or more data would help")
