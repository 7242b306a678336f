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
        *preference_rows(records),
        ("tokens/s (mean)", f"{sum(rates) / len(rates):.0f}" if rates else "-"),
        ("elapsed", duration((end or last or start).get("time", t0) - t0)),
        ("peak memory", f"{max(memory):.2f} GB" if memory else "-"),
    ]


def is_preference(records: list[dict[str, Any]]) -> bool:
    """Records of a preference run (DPO, ORPO): their log events carry the reward keys, null or not."""
    return any("reward_accuracy" in r for r in records)


def preference_rows(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """A preference run's last reward accuracy, margin and log-probs, train and held-out; none for other runs."""
    if not is_preference(records):
        return []

    def last(key: str, fmt: str) -> str:
        values = {"train": _last(records, key), "held-out": _last(records, "eval_" + key)}
        return " / ".join(f"{where} {v:{fmt}}" for where, v in values.items() if v is not None) or "-"

    return [("last reward accuracy", last("reward_accuracy", ".2f")),
            ("last reward margin", last("reward_margin", ".3f")),
            ("last log-prob chosen", last("logp_chosen", ".1f")),
            ("last log-prob rejected", last("logp_rejected", ".1f"))]


def _last(records: list[dict[str, Any]], key: str) -> float | None:
    return next((r[key] for r in reversed(records) if r.get(key) is not None), None)


def summary_html(start: dict[str, Any], records: list[dict[str, Any]], end: dict[str, Any] | None,
                 validations: list[dict[str, Any]] = ()) -> str:
    body = "".join(f"<tr><th style='{_CELL}'>{escape(k)}</th><td style='{_CELL}'>{escape(v)}</td></tr>"
                   for k, v in summary_rows(start, records, end, validations))
    return f"<table style='border-collapse:collapse;margin:4px 0'>{body}</table>"
