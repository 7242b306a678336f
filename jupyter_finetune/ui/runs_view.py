"""The runs table and runs side by side as HTML, with the loss curves as a matplotlib figure.

The HTML is static (the plot an inline PNG), so a saved notebook keeps it; ``ui.display`` registers
it for RunTable and RunComparison, whose ``repr`` is the text form a terminal shows.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from matplotlib.figure import Figure

from ..runs.summary import COLUMNS, REPAIR, RunComparison, RunSummary, RunTable, damage_notes, row_cells, value_text
from .plots import figure_png
from .tables import _CELL

_STATUS_COLOUR = {"completed": "#2e7d32", "running": "#1565c0", "queued": "#1565c0", "stopped": "#b26a00",
                  "failed": "#c62828", "interrupted": "#c62828", "damaged": "#c62828"}
_DIFFERS = "background:#fbc02d55;font-weight:bold"


def table_html(table: RunTable) -> str:
    """The runs table, or where there are none yet, what to do."""
    return runs_html(table) if table else f"<p>{escape(repr(table))}</p>"


def runs_html(summaries: list[RunSummary]) -> str:
    """The runs as table rows; under the table, each damaged run's file and reason, and the fix."""
    head = "".join(f"<th style='{_CELL}'>{escape(c)}</th>" for c in COLUMNS)
    body = []
    for s in summaries:
        cells = [escape(c) for c in row_cells(s)]
        title = f" title='{escape(s.damage, quote=True)}'" if s.damage else ""
        cells[1] = f"<span style='color:{_STATUS_COLOUR.get(s.status, 'inherit')}'{title}>{cells[1]}</span>"
        body.append("<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>")
    notes = "".join(f"<li>{escape(n)}</li>" for n in damage_notes(summaries))
    damaged = f"<p>Damaged runs ({escape(REPAIR)}):</p><ul class='damaged'>{notes}</ul>" if notes else ""
    return f"<table style='border-collapse:collapse;margin:4px 0'><tr>{head}</tr>{''.join(body)}</table>{damaged}"


def overlay_figure(curves: dict[str, list[dict[str, Any]]]) -> Figure:
    """Every run's loss against step on one axes: one colour per run, train solid, eval dashed."""
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, records) in enumerate(curves.items()):
        for key, style, label in (("loss", "-", "train"), ("eval_loss", "o--", "eval")):
            points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), style, color=f"C{i % 10}", markersize=3, linewidth=1.2,
                        label=f"{name} {label}".replace("$", r"\$"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="upper right", fontsize=8)
    return fig


def settings_html(c: RunComparison) -> str:
    """Every setting of the runs side by side; the rows that differ are highlighted."""
    head = f"<th style='{_CELL}'>setting</th>" + "".join(f"<th style='{_CELL}'>{escape(s.name)}</th>" for s in c.runs)
    body = []
    for key, values in c.settings.items():
        attrs = f" class='differs' style='{_DIFFERS}'" if key in c.differing else ""
        cells = "".join(f"<td style='{_CELL}'>{escape(value_text(v))}</td>" for v in values)
        body.append(f"<tr{attrs}><th style='{_CELL}'>{escape(key)}</th>{cells}</tr>")
    return f"<table style='border-collapse:collapse;margin:4px 0'><tr>{head}</tr>{''.join(body)}</table>"


def comparison_html(c: RunComparison) -> str:
    png = base64.b64encode(figure_png(overlay_figure(c.curves))).decode()
    names = ", ".join(s.name for s in c.runs)
    differ = ", ".join(c.differing) or "none"
    return (f"<div>{runs_html(c.runs)}<img src='data:image/png;base64,{png}' alt='loss curves of "
            f"{escape(names, quote=True)}'/><p>Settings that differ (highlighted): {escape(differ)}</p>"
            f"{settings_html(c)}</div>")
