"""The data report as HTML: counts, token statistics, cost and time, problems, and a pre-flight view.

The text form is the data set's own ``repr``; ``ui.display`` registers ``report_html`` as its HTML.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ..data import FtDataset, Problem, TokenView
from ..data.dataset import MAX_WARNINGS_SHOWN, rough_duration
from .env import publish

_STYLE = ("<style>.ftd table{border-collapse:collapse;margin:4px 0 10px}.ftd td,.ftd th{padding:2px 10px;"
          "border-bottom:1px solid #8884;text-align:left}.ftd .loss{background:#2e7d3233}.ftd .cut{opacity:.45;"
          "text-decoration:line-through}.ftd .err{color:#c62828}.ftd .warn{color:#b26a00}"
          ".ftd pre{white-space:pre-wrap;font-size:12px;line-height:1.5}</style>")


def _table(rows: list[tuple[str, str]], head: tuple[str, ...] = ()) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + th + '</tr>' if th else ''}{body}</table>"


def problems_html(problems: list[Problem]) -> str:
    if not problems:
        return "<p>No problems found.</p>"
    rows = []
    for p in problems[:MAX_WARNINGS_SHOWN]:
        cls = "err" if p.severity == "error" else "warn"
        where = ", ".join(str(r) for r in p.rows[:12]) + (f" (+{len(p.rows) - 12})" if len(p.rows) > 12 else "")
        rows.append((f"<span class='{cls}'>{p.severity}</span>", escape(where or "-"), escape(p.field or ""),
                     escape(p.message), escape(p.fix)))
    more = len(problems) - MAX_WARNINGS_SHOWN
    tail = f"<p>... and {more} more.</p>" if more > 0 else ""
    return _table(rows, ("", "row", "field", "problem", "fix")) + tail


def preview_html(tokens: list[TokenView]) -> str:
    """The rendered example with loss-bearing tokens highlighted and tokens past max length struck."""
    loss = sum(t.carries_loss and not t.cut for t in tokens)
    return (f"<pre>{_spans(tokens)}</pre><p>{len(tokens)} tokens; <span class='loss'>{loss} carry loss</span> "
            "(the final answer and its end token); the rest is prompt.</p>")


def pair_preview_html(chosen: list[TokenView], rejected: list[TokenView]) -> str:
    """A preference pair as DPO sees it: the shared prompt once, then each answer that follows it, with
    the loss-bearing tokens of both sides highlighted and tokens past max length struck."""
    prompt = [t for t in chosen if not t.carries_loss]
    sides = []
    for side, tokens in (("chosen", chosen), ("rejected", rejected)):
        answer = [t for t in tokens if t.carries_loss]
        loss = sum(not t.cut for t in answer)
        sides.append(f"<p><b>{side}</b> (prompt + answer: {len(tokens)} tokens, <span class='loss'>{loss} carry "
                     f"loss</span>)</p><pre>{_spans(answer)}</pre>")
    return (f"<p><b>prompt</b> ({len(prompt)} tokens, shared by both sides)</p><pre>{_spans(prompt)}</pre>"
            + "".join(sides) + "<p>Training runs the prompt with each answer; the answers' tokens and their end "
            "tokens carry loss, and the pair teaches through the difference between them.</p>")


def _spans(tokens: list[TokenView]) -> str:
    spans = []
    for t in tokens:
        classes = " ".join(c for c, on in (("loss", t.carries_loss), ("cut", t.cut)) if on)
        text = escape(t.text)
        spans.append(f"<span class='{classes}'>{text}</span>" if classes else text)
    return "".join(spans)


def example_html(ds: FtDataset, index: int = 0, split: str = "train") -> str:
    """One example (of a preference data set, one pair) as training sees it."""
    if ds.is_preference:
        return pair_preview_html(ds.preview(index, split), ds.preview(index, split, side="rejected"))
    return preview_html(ds.preview(index, split))


def report_html(ds: FtDataset) -> str:
    s, t, c = ds.stats, ds.test_stats, ds.cost
    if ds.is_preference:
        lengths = ds.train_lengths
        unit = "pairs"
        per = ("tokens per pair", f"min {s.min} / mean {s.mean:.0f} / p95 {s.p95} / max {s.max}, both sequences "
               f"(prompt + chosen, prompt + rejected; answers mean {_mean(lengths.answer):.0f} chosen, "
               f"{_mean(lengths.rejected_answer):.0f} rejected); longest sequence {s.longest}; counted with "
               f"{escape(ds.model)}'s chat template")
    else:
        unit = "rows"
        per = ("tokens per example", f"min {s.min} / mean {s.mean:.0f} / p95 {s.p95} / max {s.max} "
               f"(answer mean {s.answer_mean:.0f}), counted with {escape(ds.model)}'s chat template")
    summary = _table([
        ("data", f"<b>{escape(ds.name)}</b> v{ds.version} ({escape(ds.format)}), split {escape(ds.split)}, seed {ds.seed}"),
        (unit, f"{len(ds.train)} train / {len(ds.test)} test"),
        per,
        ("tokens per epoch", f"{s.total:,} train, {t.total:,} test; max length {ds.max_length}"
                             + (f", {s.truncated} truncated" if s.truncated else "")),
        ("local training time", f"~{rough_duration(c.local_seconds)} for {c.epochs} epochs on {escape(c.local_device)} (rough)"),
    ])
    costs = _table([(escape(m), f"${usd:,.2f}") for m, usd in c.openai_usd.items()],
                   (f"OpenAI fine-tuning, {c.epochs} epochs x {c.tokens_per_epoch:,} tokens (prices as of {c.prices_as_of})",
                    "cost"))
    preview = example_html(ds) if ds.train else ""
    which = "train pair 1" if ds.is_preference else "train example 1"
    return (f"{_STYLE}<div class='ftd'><h4>Data report</h4>{summary}{costs}"
            f"<h4>Problems ({len(ds.warnings)} warnings)</h4>{problems_html(ds.warnings)}"
            f"<h4>What training sees ({which})</h4>{preview}</div>")


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def errors_html(name: str, problems: list[Problem]) -> str:
    n = sum(p.severity == "error" for p in problems)
    return (f"{_STYLE}<div class='ftd'><h4 class='err'>{escape(name)}: {n} error(s), nothing stored</h4>"
            f"{problems_html(problems)}</div>")


def show_errors(name: str, problems: list[Problem]) -> None:
    """The problems as an HTML table, shown only where HTML renders: a terminal has them in the error text."""
    publish({"text/html": errors_html(name, problems)})


def browser(ds: FtDataset) -> Any:
    """Widget: page through the train or test examples as training sees them (None without any)."""
    import ipywidgets as w

    if not ds.train:
        return None

    split = w.ToggleButtons(options=["train", "test"] if ds.test else ["train"], description="split")
    index = w.BoundedIntText(value=1, min=1, max=len(ds.train), description="example")
    out = w.HTML()

    def redraw(_=None) -> None:
        rows = ds.train if split.value == "train" else ds.test
        index.max = len(rows)
        i = min(index.value, len(rows)) - 1
        out.value = f"{_STYLE}<div class='ftd'>source row {rows[i].row}{example_html(ds, i, split.value)}</div>"

    split.observe(redraw, "value")
    index.observe(redraw, "value")
    redraw()
    return w.VBox([w.HTML("<b>Browse what training sees</b>"), w.HBox([split, index]), out])


def browser_text(ds: FtDataset) -> str:
    """What shows in place of the browser where widgets cannot render."""
    unit = "pair" if ds.is_preference else "example"
    return (f"Example browser of {ds.name} ({len(ds.train)} train / {len(ds.test)} test {unit}s): a widget, "
            f"live while the kernel runs; the report above shows train {unit} 1 as training sees it")
