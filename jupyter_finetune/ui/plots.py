"""Loss curves as matplotlib figures, built with the object API (no pyplot: thread-safe, headless)."""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

from .tables import is_preference


def loss_figure(records: list[dict[str, Any]], title: str = "", validations: list[dict[str, Any]] = ()) -> Figure:
    """Train and eval loss against step on one small axes, and the validation score (0-1) on a second
    axis at the right. A preference run's figure adds two panels below: reward accuracy with the reward
    margin, and the log-probabilities of the chosen and the rejected answers; train and held-out each.

    Colours come from the active matplotlib style and the background stays opaque, so the PNG
    reads the same on a light or a dark notebook theme.
    """
    preference = is_preference(records)
    fig = Figure(figsize=(6, 7.5 if preference else 3), layout="constrained")
    ax = fig.add_subplot(3, 1, 1) if preference else fig.add_subplot()
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None]
    if train:
        ax.plot(*zip(*train), color="C0", linewidth=1.2, label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", color="C1", markersize=3, linewidth=1.2, label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title.replace("$", r"\$"), fontsize=10)  # a run name is not mathtext
    handles = ax.get_legend_handles_labels()
    if validations:
        score = ax.twinx()
        score.plot([v["step"] for v in validations], [v["score"] for v in validations], "s--", color="C2",
                   markersize=4, linewidth=1.0, label=f"validation {validations[-1]['metric']}")
        score.set_ylim(0, 1.02)
        score.set_ylabel(validations[-1]["metric"])
        more = score.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    if handles[0]:
        ax.legend(*handles, loc="upper right", fontsize=8)
    if preference:
        _reward_panel(fig.add_subplot(3, 1, 2, sharex=ax), records)
        _logp_panel(fig.add_subplot(3, 1, 3, sharex=ax), records)
    return fig


def _series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if r.get(key) is not None]


def _plot_pair(ax: Any, records: list[dict[str, Any]], key: str, label: str, color: str) -> None:
    """``key`` on train batches (a line) and ``eval_`` + ``key`` on held-out pairs (dots), in one colour."""
    train, held = _series(records, key), _series(records, "eval_" + key)
    if train:
        ax.plot(*zip(*train), color=color, linewidth=1.0, alpha=0.8, label=f"{label} (train)")
    if held:
        ax.plot(*zip(*held), "o--", color=color, markersize=3, linewidth=1.0, label=f"{label} (held-out)")


def _reward_panel(ax: Any, records: list[dict[str, Any]]) -> None:
    """Reward accuracy (0-1) at the left, the reward margin on a second axis at the right."""
    _plot_pair(ax, records, "reward_accuracy", "accuracy", "C0")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("reward accuracy")
    ax.grid(alpha=0.3)
    margin = ax.twinx()
    _plot_pair(margin, records, "reward_margin", "margin", "C1")
    margin.set_ylabel("reward margin")
    handles = [a + b for a, b in zip(ax.get_legend_handles_labels(), margin.get_legend_handles_labels())]
    if handles[0]:
        ax.legend(*handles, loc="best", fontsize=8)


def _logp_panel(ax: Any, records: list[dict[str, Any]]) -> None:
    """Log-probabilities of the chosen and the rejected answers: both falling is DPO's known failure."""
    _plot_pair(ax, records, "logp_chosen", "chosen", "C2")
    _plot_pair(ax, records, "logp_rejected", "rejected", "C3")
    ax.set_xlabel("step")
    ax.set_ylabel("log-prob of answer")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """PNG bytes at a modest resolution, so saved notebooks stay small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
