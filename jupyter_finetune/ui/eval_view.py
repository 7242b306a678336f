"""The evaluation's display: comparison table with the verdict, and the per-example view.

The table, the verdict and the fine-tuned model's failures (as a collapsed list) are static HTML,
so a saved notebook keeps them; in a kernel with widgets an example browser filters all rows.
In a terminal the report shows as its ``repr`` (text); ``ui.display`` registers the HTML.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ..evaluation.compare import format_value
from ..evaluation.preference_eval import number
from ..evaluation.systems import RETRIEVAL, WITH_DOCS

_CELL = "padding:2px 8px;border-bottom:1px solid #8884;text-align:left;vertical-align:top"
_PRE = "white-space:pre-wrap;font-family:monospace;font-size:90%;margin:0;max-width:28em"
FILTERS = ("all", "fine-tuned fails", "fine-tuned worse than another")
STATIC_EXAMPLES = 30


def comparison_html(report: Any) -> str:
    """Systems as rows, metrics as columns (best value in bold), then the verdict in words."""
    table = report.comparison.table()
    columns = [c for c in table[0] if c != "system"]
    best = {m: max(r[m] for r in table) for m in report.comparison.metrics}
    head = "".join(f"<th style='{_CELL}'>{escape(c)}</th>" for c in ["system", *columns])
    body = ""
    for r in table:
        cells = [f"<td style='{_CELL}'>{escape(r['system'])}</td>"]
        for c in columns:
            text = format_value(c, r[c])
            cells.append(f"<td style='{_CELL}'>{f'<b>{text}</b>' if c in best and r[c] == best[c] else text}</td>")
        body += f"<tr>{''.join(cells)}</tr>"
    found = report.verdict.recommendation
    mark = "&#10004; " if found.system else "&#10008; "
    verdict = (f"<p>{mark}<b>Verdict: {escape(found.headline)}</b></p><ul style='margin-top:0'>"
               + "".join(f"<li>{escape(line)}</li>" for line in found.lines[:-1])
               + "".join(f"<li style='color:#666'>{escape(line)}</li>" for line in report.cost_lines()) + "</ul>")
    extra = f"<p>{escape(report.forgetting.text())}</p>" if report.forgetting else ""
    if report.loaded:
        extra += f"<p style='color:#666'>loaded: {escape(report.loaded.text())}</p>"
    pairs = preference_html(report.preference) if report.preference else ""
    return (f"<div><p><b>{escape(report.run)}</b> on {escape(report.data)} v{escape(report.version)} "
            f"({report.comparison.rows} held-out rows)</p><table style='border-collapse:collapse'>"
            f"<tr>{head}</tr>{body}</table>{pairs}{verdict}{extra}</div>")


def preference_html(preference: Any) -> str:
    """Preference accuracy per model (the best in bold), then the answers' mean lengths beside the chosen and
    rejected answers'."""
    best = max(preference.accuracy().values())
    scores = _table(preference.score_rows(), bold=lambda column, value: column == "accuracy" and value == best)
    return (f"<p>Preference accuracy on {preference.pairs} held-out pairs (chosen's mean log-prob per token above "
            f"rejected's)</p>{scores}<p>Mean answer length</p>{_table(preference.length_rows())}")


def _table(rows: list[dict[str, Any]], bold: Any = lambda column, value: False) -> str:
    first, *columns = rows[0]
    head = "".join(f"<th style='{_CELL}'>{escape(c)}</th>" for c in rows[0])
    body = ""
    for r in rows:
        cells = [escape(r[first])] + [f"<b>{number(c, r[c])}</b>" if bold(c, r[c]) else number(c, r[c])
                                      for c in columns]
        body += "<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>"
    return f"<table style='border-collapse:collapse'><tr>{head}</tr>{body}</table>"


def selected_rows(report: Any, which: str) -> list[int]:
    """Indices of the held-out rows a filter keeps, judged on the verdict's metric."""
    per_row = {name: s.per_row[report.verdict.metric] for name, s in report.comparison.systems.items()}
    tuned = per_row["fine-tuned"]
    if which == FILTERS[1]:
        return [i for i, v in enumerate(tuned) if v < 1.0]
    if which == FILTERS[2]:
        return [i for i, v in enumerate(tuned) if any(other[i] > v for other in per_row.values())]
    return list(range(len(tuned)))


def examples_html(report: Any, indices: list[int]) -> str:
    """Input, reference, each system's answer and its score on the verdict's metric, with the passages a
    RAG system was given and the training rows retrieval showed."""
    outputs, metric = report.comparison.outputs, report.verdict.metric
    systems = list(report.comparison.systems)
    head = "".join(f"<th style='{_CELL}'>{escape(h)}</th>" for h in ["row", "input", "reference", *systems])
    body = ""
    for i in indices:
        question = outputs.prompts[i][-1]["content"]
        cells = [str(outputs.rows[i]), _pre(question), _pre(outputs.references[i])]
        for name in systems:
            value = report.comparison.systems[name].per_row[metric][i]
            cells.append(f"{_pre(outputs.generations[name].answers[i])}<small>{escape(metric)} {value:.2f}"
                         f"{_context(outputs, name, i)}</small>")
        body += "<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>"
    return f"<table style='border-collapse:collapse'><tr>{head}</tr>{body}</table>"


def _context(outputs: Any, system: str, i: int) -> str:
    if system in WITH_DOCS and outputs.citations:
        return "<br>cites " + escape(", ".join(outputs.citations[i]))
    if system == RETRIEVAL and outputs.neighbours:
        return "<br>examples: rows " + ", ".join(str(r) for r in outputs.neighbours[i])
    return ""


def _pre(text: str) -> str:
    return f"<pre style='{_PRE}'>{escape(text)}</pre>"


def static_html(report: Any) -> str:
    """The record a saved notebook keeps: the comparison and the first failures, collapsed."""
    failures = selected_rows(report, FILTERS[1])
    shown = failures[:STATIC_EXAMPLES]
    more = f" (first {len(shown)})" if len(failures) > len(shown) else ""
    details = (f"<details><summary>{len(failures)} held-out rows where fine-tuned scores below 1 on "
               f"{escape(report.verdict.metric)}{more}</summary>{examples_html(report, shown)}</details>"
               if failures else "")
    return comparison_html(report) + details


def browser(report: Any) -> Any:
    """Widget: filter the held-out rows and page through them, 10 at a time."""
    import ipywidgets as w

    which = w.ToggleButtons(options=FILTERS, description="rows")
    page = w.BoundedIntText(value=1, min=1, max=1, description="page")
    out = w.HTML()

    def redraw(_: Any = None) -> None:
        rows = selected_rows(report, which.value)
        page.max = max(1, -(-len(rows) // 10))
        first = (min(page.value, page.max) - 1) * 10
        out.value = (f"<p>{len(rows)} rows</p>" + examples_html(report, rows[first:first + 10])) if rows else \
            "<p>no rows</p>"

    which.observe(redraw, "value")
    page.observe(redraw, "value")
    redraw()
    return w.VBox([w.HTML("<b>Per-example answers</b>"), w.HBox([which, page]), out])


def browser_text(report: Any) -> str:
    """What shows in place of the browser where widgets cannot render."""
    return (f"Per-example answers of {report.run} ({report.comparison.rows} held-out rows): a widget, live while "
            "the kernel runs; the report above lists the rows where fine-tuned scores below 1")
