"""One evaluation of a run: the fine-tuned model against prompting, RAG and both on held-out rows,
with the recommendation and its break-even.

Answers are kept with the run, one file per data version, and reused when asked again with the
same adapter and generation settings (a new metric or threshold costs no generation).

A run that started from another run's adapter (``--from``) is compared with that adapter too, and on
preference pairs every evaluation also measures preference accuracy and answer lengths
(evaluation/preference_eval.py).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ..data import FtDataset, restore
from ..errors import FinetuneError, InvalidValue
from ..data.documents import Documents, read_documents
from ..data.estimate import serving_price
from ..models import load_config, load_tokenizer
from ..models.size import parameter_count
from ..runs import FINE_TUNED, Run
from . import compare as cmp
from . import report
from .costs import training_cost
from .curves import learning_trend
from .decision import PAYBACK_DAYS, REQUESTS_PER_DAY, Costs
from .forgetting import check_forgetting
from .loading import adapter_fingerprint, load_run
from .metrics import default_metrics, resolve_metric
from .preference_eval import PreferenceEval, lengths, score_systems
from .systems import default_against, started_from
from .verdict import Threshold, decide


def evaluate_run(run: Run, data: FtDataset | None = None, *, split: str = "test",
                 against: tuple[str, ...] | str | None = None, shots: int = 3,
                 docs: str | Path | Documents | None = None, passages: int = 3,
                 metrics: tuple[Any, ...] | str | None = None, threshold: str | float | None = None,
                 requests_per_day: int = REQUESTS_PER_DAY, payback_days: int = PAYBACK_DAYS,
                 max_new_tokens: int | None = None, batch_size: int | None = None, limit: int | None = None,
                 forgetting: bool = False, regenerate: bool = False) -> report.EvalReport:
    """Fine-tuned vs the systems ``against`` (``"none"``: fine-tuned alone) on ``data``'s ``split``.

    ``against`` defaults to base, fewshot and retrieval (``shots`` examples each), and rag when ``docs``
    are given (``passages`` retrieved per question). ``threshold`` is the bar a system must reach;
    the recommendation weighs the systems that reach it by training cost and prompt tokens over
    ``payback_days`` of ``requests_per_day`` (evaluation/decision.py).

    ``data`` defaults to the run's own copy. ``metrics`` default to JSON metrics when the answers
    are JSON, else exact/f1/rougeL; ``max_new_tokens`` to the longest reference answer plus a margin;
    ``batch_size`` to what free memory holds. A run trained from another run's adapter (``--from``) is also
    compared with that adapter, as the system ``"METHOD (RUN)"`` (unless ``against`` is "none"). On
    preference pairs (``data.is_preference``) the references are the chosen answers, and the report adds
    each model's preference accuracy (base, the starting run, the run) and the answers' mean lengths; the
    verdict says the accuracy, and whether the fine-tuned answers are much longer. The model is loaded
    through the run's own backend, on its device and precision (``loading.load_run``), and stays loaded for
    the next evaluation or chat of the run. Answers generated before an out-of-memory error are kept, and the
    next call continues from them. A damaged run is refused before anything loads.
    """
    run.check()
    run.trained_adapter()
    model = run.settings().model
    if requests_per_day < 1 or payback_days < 1:
        raise InvalidValue(f"--requests-per-day and --payback-days must be 1 or more (got {requests_per_day}, "
                           f"{payback_days})")
    if docs is not None and not isinstance(docs, Documents):
        docs = read_documents(docs)
    tokenizer = load_tokenizer(model)
    if data is None:
        data = restore(run.manifest(), run.data_rows(), tokenizer)
    rows = cmp.held_out(data, split, limit)
    start = start_system(run)
    others = default_against(docs is not None) if against is None else names(against)
    systems = (FINE_TUNED, *others, *((start,) if start and others else ()))
    chosen = dict(resolve_metric(m) for m in (names(metrics) if metrics else default_metrics(rows)))
    if max_new_tokens is None:
        max_new_tokens = cmp.answer_budget(tokenizer, rows)
    settings = {"split": split, "shots": shots, "seed": 0, "max_new_tokens": max_new_tokens, "limit": limit,
                **({"docs": docs.version, "passages": passages} if docs is not None else {})}
    adapter = adapter_fingerprint(run.adapter_dir)
    reuse = None if regenerate else report.saved_outputs(run, data.version, adapter, settings)
    outputs = cmp.generate_outputs(partial(load_run, run, start=start in systems), rows, data.train, settings,
                                   systems=systems, docs=docs, batch_size=batch_size, reuse=reuse,
                                   keep=partial(report.save_partial, run, data.version, adapter), start=start)
    price = serving_price(parameter_count(load_config(model)))
    comparison = cmp.score_outputs(outputs, chosen, cmp.metric_rows(rows), price.usd_per_million)
    preference = None
    if data.is_preference:
        measured = {"adapter": adapter, "start": adapter_fingerprint(run.start_adapter_dir) if start else "",
                    "split": split, "limit": limit}
        scores = None if regenerate else report.saved_preference(run, data.version, measured)
        if scores is None:
            scores = score_systems(load_run(run, start=start is not None), rows, start)
        preference = PreferenceEval(str(run.settings().train.get("method") or "sft"), scores,
                                    lengths(tokenizer, outputs, list(comparison.systems), rows), measured)
    records = run.metrics()
    trained = training_cost(run, records)
    costs = Costs(trained.basis_usd, price.usd_per_million, requests_per_day, payback_days)
    verdict = decide(comparison, Threshold.parse(str(threshold), comparison.metrics[0]) if threshold is not None
                     else None, costs, learning_trend(records).text, preference.notes() if preference else ())
    if forgetting:
        loaded = load_run(run)
        checked = check_forgetting(loaded.model, loaded.tokenizer)
    else:
        checked = None
    path = report.save(run, data.version, adapter, comparison, verdict, checked, data.name, preference)
    generated = tuple(s for s in systems if reuse is None or s not in reuse.generations)
    return report.EvalReport(run.name, data.name, data.version, comparison, verdict, checked, path, generated,
                             trained, price, preference)


def start_system(run: Run) -> str | None:
    """The system of the adapter ``run`` started from (``--from``), named by that run's method and name
    (``"sft (tickets-1)"``; ``"start (NAME)"`` once that run is gone); None when it started from none."""
    source = run.settings().train.get("from_run")
    if not source or run.start_adapter() is None:
        return None
    try:
        method = Run(run.path.parent / str(source)).settings().train.get("method") or "sft"
    except FinetuneError:
        method = "start"
    return started_from(str(method), str(source))


def names(value: tuple[Any, ...] | list[Any] | str) -> tuple[Any, ...]:
    """``"a,b"`` or a sequence -> a tuple of names; ``"none"`` (or "") -> no names."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip() and v.strip() != "none")
    return tuple(value)
