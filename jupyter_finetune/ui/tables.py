"""Small HTML tables for training summaries."""

from __future__ import annotations

from html import escape
from typing import Any


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def summary_rows(start: dict[str, Any], records: list[dict[str, Any]], end: dict[str, Any] | None) -> list[tuple[str, str]]:
    last = records[-1] if records else {}
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    rates = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
    elapsed = (end or last or start).get("time", start.get("time", 0)) - start.get("time", 0)
    return [
        ("run", str(start.get("run", ""))),
        ("status", end["status"] if end else "running"),
        ("step", f"{last.get('step', start.get('step', 0))}/{start.get('max_steps', '?')}"),
        ("epoch", f"{last.get('epoch', 0):.2f}"),
        ("last train loss", f"{losses[-1]:.4f}" if losses else "-"),
        ("best eval loss", f"{min(evals):.4f}" if evals else "-"),
        ("tokens/s", f"{sum(rates) / len(rates):.0f}" if rates else "-"),
        ("elapsed", duration(elapsed)),
        ("peak memory", f"{last.get('memory_gb', 0):.2f} GB"),
    ]


def summary_html(start: dict[str, Any], records: list[dict[str, Any]], end: dict[str, Any] | None) -> str:
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in summary_rows(start, records, end))
    return f"<table>{body}</table>"
