"""One evaluation of a run: the fine-tuned model against base zero-shot and few-shot on held-out rows.

Answers are kept with the run, one file per data version, and reused when asked again with the
same adapter and generation settings (a new metric or threshold costs no generation).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..data import FtDataset, restore
from ..models import load_tokenizer
from ..runs import FINE_TUNED, Run
from . import compare as cmp
from . import report
from .forgetting import check_forgetting
from .loading import adapter_fingerprint, load_run
from .metrics import default_metrics, resolve_metric
from .verdict import Threshold, decide


def evaluate_run(run: Run, data: FtDataset | None = None, *, split: str = "test",
                 against: tuple[str, ...] | str = ("base", "fewshot"), shots: int = 3,
                 metrics: tuple[Any, ...] | str | None = None, threshold: str | float | None = None,
                 max_new_tokens: int | None = None, batch_size: int | None = None, limit: int | None = None,
                 forgetting: bool = False, regenerate: bool = False) -> report.EvalReport:
    """Fine-tuned vs the systems ``against`` (``"none"``: fine-tuned alone) on ``data``'s ``split``.

    ``data`` defaults to the run's own copy. ``metrics`` default to JSON metrics when the answers
    are JSON, else exact/f1/rougeL; ``max_new_tokens`` to the longest reference answer plus a margin;
    ``batch_size`` to what free memory holds. The model is loaded through the run's own backend, on its
    device and precision (``loading.load_run``), and stays loaded for the next evaluation or chat of the
    run. Answers generated before an out-of-memory error are kept, and the next call continues from them.
    A damaged run is refused before anything loads.
    """
    run.check()
    run.trained_adapter()
    model = run.settings().model
    tokenizer = load_tokenizer(model)
    if data is None:
        data = restore(run.manifest(), run.data_rows(), tokenizer)
    rows = cmp.held_out(data, split, limit)
    systems = (FINE_TUNED, *names(against))
    chosen = dict(resolve_metric(m) for m in (names(metrics) if metrics else default_metrics(rows)))
    if max_new_tokens is None:
        max_new_tokens = cmp.answer_budget(tokenizer, rows)
    settings = {"split": split, "shots": shots, "seed": 0, "max_new_tokens": max_new_tokens, "limit": limit}
    adapter = adapter_fingerprint(run.adapter_dir)
    reuse = None if regenerate else report.saved_outputs(run, data.version, adapter, settings)
    outputs = cmp.generate_outputs(partial(load_run, run), rows, data.train, settings, systems=systems,
                                   batch_size=batch_size, reuse=reuse,
                                   keep=partial(report.save_partial, run, data.version, adapter))
    comparison = cmp.score_outputs(outputs, chosen, cmp.metric_rows(rows))
    verdict = decide(comparison, Threshold.parse(str(threshold), comparison.metrics[0]) if threshold is not None else None)
    if forgetting:
        loaded = load_run(run)
        checked = check_forgetting(loaded.model, loaded.tokenizer)
    else:
        checked = None
    path = report.save(run, data.version, adapter, comparison, verdict, checked, data.name)
    generated = tuple(s for s in systems if reuse is None or s not in reuse.generations)
    return report.EvalReport(run.name, data.name, data.version, comparison, verdict, checked, path, generated)


def names(value: tuple[Any, ...] | list[Any] | str) -> tuple[Any, ...]:
    """``"a,b"`` or a sequence -> a tuple of names; ``"none"`` (or "") -> no names."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip() and v.strip() != "none")
    return tuple(value)
