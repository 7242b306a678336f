"""Loss curves as matplotlib figures, built with the object API (no pyplot: thread-safe, headless)."""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure


def loss_figure(records: list[dict[str, Any]], title: str = "", validations: list[dict[str, Any]] = ()) -> Figure:
    """Train and eval loss against step on one small axes, and the validation score (0-1) on a second
    axis at the right.

    Colours come from the active matplotlib style and the background stays opaque, so the PNG
    reads the same on a light or a dark notebook theme.
    """
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
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
    return fig


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """PNG bytes at a modest resolution, so saved notebooks stay small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
