"""A run's evaluation history as HTML: the table with its flags, and the score over the evaluations.

Static (the plot an inline PNG), so a saved notebook keeps it; ``ui.display`` registers it for History,
whose ``repr`` is the text form a terminal shows.
"""

from __future__ import annotations

import base64
from html import escape

from matplotlib.figure import Figure

from ..evaluation.drift import History
from .plots import figure_png
from .tables import _CELL

_DROP = "background:#c6282833"
_CHANGE = "border-top:2px solid #1565c0"


def history_figure(history: History) -> Figure:
    """The compared system's score against the evaluation's number: one line per adapter, drops marked red."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    for segment, adapter in enumerate(history.adapters):
        points = [(e.number, score) for e in history.entries
                  if e.segment == segment and (score := e.record.score(history.metric, history.system)) is not None]
        if points:
            ax.plot(*zip(*points), "o-", color=f"C{segment % 10}", markersize=4, linewidth=1.2,
                    label=f"adapter {adapter or '?'}")
    drops = [(d.after, e.number) for e in history.entries if (d := e.drop)]
    if drops:
        ax.plot([n for _, n in drops], [r.score(history.metric, history.system) for r, _ in drops], "v",
                color="#c62828", markersize=9, linestyle="none", label=f"drop > {history.tolerance:g}")
    ax.set_xticks([e.number for e in history.entries],
                  [f"{e.number}\nv{e.record.data_version[:6]}" for e in history.entries], fontsize=7)
    ax.set_xlabel("evaluation (data version)")
    ax.set_ylabel(f"{history.system} {history.metric}".replace("$", r"\$"))
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="lower left", fontsize=8)
    return fig


def history_html(history: History) -> str:
    """The table (a drop's row tinted, a change of adapter ruled above its row), the plot, and the drops in words."""
    if not history.entries:
        return f"<p>{escape(history.empty_text())}</p>"
    rows = history.rows()
    head = "".join(f"<th style='{_CELL}'>{escape(c)}</th>" for c in rows[0])
    body = []
    for entry, row in zip(history.entries, rows):
        styles = ";".join(s for s, on in ((_DROP, entry.drop), (_CHANGE, entry.adapter_change)) if on)
        attrs = (" class='drop'" if entry.drop else "") + (f" style='{styles}'" if styles else "")
        body.append(f"<tr{attrs}>" + "".join(f"<td style='{_CELL}'>{escape(v)}</td>" for v in row.values()) + "</tr>")
    png = base64.b64encode(figure_png(history_figure(history))).decode()
    drops = history.drops
    summary = (f"<ul>{''.join(f'<li>{escape(d.text())}</li>' for d in drops)}</ul>" if drops else
               f"<p>No drop beyond {history.tolerance:g}.</p>")
    return (f"<div><p><b>{escape(history.run)}</b>: {len(rows)} evaluations of {escape(history.system)} on "
            f"{escape(history.metric)}, {len(history.adapters)} adapter(s); each compared with the previous one "
            f"of the same adapter</p><table style='border-collapse:collapse;margin:4px 0'><tr>{head}</tr>"
            f"{''.join(body)}</table><img src='data:image/png;base64,{png}' alt='{escape(history.metric, quote=True)} "
            f"over the evaluations of {escape(history.run, quote=True)}'/>{summary}</div>")
