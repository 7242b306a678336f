"""Loss curves as matplotlib figures, built with the object API (no pyplot: thread-safe, headless)."""

from __future__ import annotations

import io
from typing import Any


def loss_figure(records: list[dict[str, Any]], title: str = "") -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None]
    if train:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="#ff7f0e")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if train or evals:
        ax.legend(loc="upper right", fontsize=8)
    return fig


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """PNG bytes at a modest resolution, so saved notebooks stay small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()
