"""Small HTML tables for training summaries: plain data in, escaped HTML out."""

from __future__ import annotations

from html import escape
from typing import Any

from ..runs.summary import duration

_CELL = "padding:2px 10px;border-bottom:1px solid #8884;text-align:left"


def summary_rows(start: dict[str, Any], records: list[dict[str, Any]], end: dict[str, Any] | None,
                 validations: list[dict[str, Any]] = ()) -> list[tuple[str, str]]:
    """(label, value) pairs shared by the HTML table and the final text line."""
    best = validations[-1] if validations else None
    last = records[-1] if records else {}
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    rates = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
    memory = [r["memory_gb"] for r in records if r.get("memory_gb") is not None]
    t0 = start.get("time", 0.0)
    step = (end or last or start).get("step", 0)
    return [
        ("run", str(start.get("run", ""))),
        ("status", end["status"] if end else "running"),
        ("step", f"{step}/{start.get('max_steps', last.get('max_steps', '?'))}"),
        ("epoch", f"{last.get('epoch', 0.0):.2f}"),
        ("last train loss", f"{losses[-1]:.4f}" if losses else "-"),
        ("best eval loss", f"{min(evals):.4f}" if evals else "-"),
        ("best validation", f"{best['metric']} {best['best_score']:.3f} at step {best['best_step']} "
                            f"({len(validations)} validations)" if best else "-"),
        ("tokens/s (mean)", f"{sum(rates) / len(rates):.0f}" if rates else "-"),
        ("elapsed", duration((end or last or start).get("time", t0) - t0)),
        ("peak memory", f"{max(memory):.2f} GB" if memory else "-"),
    ]


def summary_html(start: dict[str, Any], records: list[dict[str, Any]], end: dict[str, Any] | None,
                 validations: list[dict[str, Any]] = ()) -> str:
    body = "".join(f"<tr><th style='{_CELL}'>{escape(k)}</th><td style='{_CELL}'>{escape(v)}</td></tr>"
                   for k, v in summary_rows(start, records, end, validations))
    return f"<table style='border-collapse:collapse;margin:4px 0'>{body}</table>"
