"""The runs table and runs side by side: pure functions to HTML, text and a matplotlib figure.

In a notebook the result is static HTML (the plot as an inline PNG), so a saved notebook keeps
it; in a plain terminal, text tables.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..runs.summary import RunComparison, RunSummary
from .env import widgets_available
from .plots import figure_png
from .tables import _CELL, duration

COLUMNS = ("run", "status", "model", "data", "preset", "length", "lr", "rank", "batch", "step", "best eval",
           "last train", "eval scores", "time")
_STATUS_COLOUR = {"completed": "#2e7d32", "running": "#1565c0", "queued": "#1565c0", "stopped": "#b26a00",
                  "failed": "#c62828", "interrupted": "#c62828"}
_DIFFERS = "background:#fbc02d55;font-weight:bold"


def value_text(value: Any) -> str:
    """A setting as a user would type it: ``3e-4``, ``all-linear,q_proj``, ``-`` for unset."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def row_cells(s: RunSummary) -> list[str]:
    """One run's cells, in COLUMNS order (shared by the HTML and the text table)."""
    steps, epochs = s.settings.get("steps"), s.settings.get("epochs")
    length = f"{steps} steps" if steps else (f"{epochs:g} epochs" if epochs is not None else "-")
    scores = ", ".join(f"{metric} {score:.2f}" for metric, score in s.eval_scores.items())
    return [s.name, s.status, s.model, s.data, value_text(s.settings.get("preset")), length,
            value_text(s.settings.get("lr")), value_text(s.settings.get("rank")),
            value_text(s.settings.get("batch_size")), f"{s.step}/{value_text(s.max_steps)}",
            _loss(s.best_eval_loss), _loss(s.last_train_loss), scores or "-", duration(s.seconds)]


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])


def runs_html(summaries: list[RunSummary]) -> str:
    head = "".join(f"<th style='{_CELL}'>{escape(c)}</th>" for c in COLUMNS)
    body = []
    for s in summaries:
        cells = [escape(c) for c in row_cells(s)]
        cells[1] = f"<span style='color:{_STATUS_COLOUR.get(s.status, 'inherit')}'>{cells[1]}</span>"
        body.append("<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>")
    return f"<table style='border-collapse:collapse;margin:4px 0'><tr>{head}</tr>{''.join(body)}</table>"


def runs_text(summaries: list[RunSummary]) -> str:
    return _text_table(list(COLUMNS), [row_cells(s) for s in summaries])


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


def settings_text(c: RunComparison) -> str:
    """The same table as text; a ``*`` marks each setting that differs."""
    rows = [[("* " if key in c.differing else "  ") + key, *map(value_text, values)]
            for key, values in c.settings.items()]
    return _text_table(["  setting", *(s.name for s in c.runs)], rows)


def comparison_html(c: RunComparison) -> str:
    png = base64.b64encode(figure_png(overlay_figure(c.curves))).decode()
    names = ", ".join(s.name for s in c.runs)
    differ = ", ".join(c.differing) or "none"
    return (f"<div>{runs_html(c.runs)}<img src='data:image/png;base64,{png}' alt='loss curves of "
            f"{escape(names, quote=True)}'/><p>Settings that differ (highlighted): {escape(differ)}</p>"
            f"{settings_html(c)}</div>")


def comparison_text(c: RunComparison) -> str:
    return (f"{runs_text(c.runs)}\n\nsettings that differ (*): {', '.join(c.differing) or 'none'}\n"
            f"{settings_text(c)}")


def show_runs(summaries: list[RunSummary], root: Path) -> None:
    """The runs table as HTML in a notebook, as text elsewhere."""
    from IPython.display import HTML, display

    if not summaries:
        print(f"no runs in {root} yet: train one with %ft_train (or point --runs-dir at your run store)")
    elif widgets_available():
        display(HTML(runs_html(summaries)))
    else:
        print(runs_text(summaries))


def show_comparison(c: RunComparison) -> None:
    """Runs side by side as HTML with the overlaid loss curves in a notebook, as text elsewhere."""
    from IPython.display import HTML, display

    if widgets_available():
        display(HTML(comparison_html(c)))
    else:
        print(comparison_text(c))
