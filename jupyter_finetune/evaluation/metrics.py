"""Metrics on one prediction against its reference: each returns a score in [0, 1].

Every metric takes ``(prediction, reference, row)``, the signature users give their own
functions (``--metric mymodule:score``); ``row`` is the held-out example as a dict with its
``messages``, for metrics that need the question too.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from functools import lru_cache
from typing import Any, Callable

from ..errors import InvalidValue

Metric = Callable[[str, str, Any], float]

# Words are runs of letters/digits; CJK and kana/hangul characters count one by one, as they are
# written without spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def words(text: str) -> list[str]:
    """Lower-cased words without punctuation: what F1 and ROUGE-L compare."""
    return _WORD.findall(text.lower())


def _json(text: str) -> Any:
    try:
        return json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None


def exact(prediction: str, reference: str, row: Any = None) -> float:
    return float(prediction.strip() == reference.strip())


def contains(prediction: str, reference: str, row: Any = None) -> float:
    """1 when the reference's words appear in the answer, in order and together: a factual answer
    ("45 days") scored whatever sentence it comes in, as in open-domain QA's answer recall."""
    want = words(reference)
    if not want:
        return float(not words(prediction))
    got = words(prediction)
    return float(any(got[i:i + len(want)] == want for i in range(len(got) - len(want) + 1)))


def json_valid(prediction: str, reference: str, row: Any = None) -> float:
    return float(_json(prediction) is not None)


def json_fields(prediction: str, reference: str, row: Any = None) -> float:
    """Share of the reference object's fields that the prediction has with the same value."""
    want, got = _json(reference), _json(prediction)
    if not isinstance(want, dict) or not want:
        return exact(prediction, reference)
    if not isinstance(got, dict):
        return 0.0
    return sum(got.get(k) == v for k, v in want.items()) / len(want)


def f1(prediction: str, reference: str, row: Any = None) -> float:
    """Token F1 as in SQuAD: harmonic mean of word precision and recall, words counted as a bag."""
    got, want = words(prediction), words(reference)
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


class _Words:
    """The tokenizer interface rouge_score expects, with our Unicode-aware words."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return words(text)


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], tokenizer=_Words())


def rouge_l(prediction: str, reference: str, row: Any = None) -> float:
    """ROUGE-L F-measure (longest common subsequence of words), computed by rouge-score."""
    return _rouge_scorer().score(reference, prediction)["rougeL"].fmeasure


METRICS: dict[str, Metric] = {"exact": exact, "contains": contains, "json_valid": json_valid,
                              "json_fields": json_fields, "f1": f1, "rougeL": rouge_l}


def resolve_metric(spec: str | Metric) -> tuple[str, Metric]:
    """A built-in metric by name, a user function as ``module:function``, or a callable."""
    if callable(spec):
        return getattr(spec, "__name__", "custom"), spec
    if spec in METRICS:
        return spec, METRICS[spec]
    if ":" not in spec:
        raise InvalidValue(f"unknown metric {spec!r}: use {', '.join(METRICS)}, or module:function for your own "
                           "(a function (prediction, reference, row) -> float in [0, 1])")
    module_name, _, func_name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidValue(f"metric {spec!r}: cannot load {func_name!r} from module {module_name!r} ({exc}); "
                           "the module must be importable from the notebook's folder or sys.path") from None
    if not callable(func):
        raise InvalidValue(f"metric {spec!r} is not a function")
    return func_name, func


def score(name: str, metric: Metric, prediction: str, reference: str, row: Any) -> float:
    """One score, checked: a user function returning something else fails naming itself."""
    value = metric(prediction, reference, row)
    if not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidValue(f"metric {name!r} returned {value!r}; it must return a number in [0, 1]")
    return float(value)


def default_metrics(rows: list[Any]) -> tuple[str, ...]:
    """The JSON metrics when every reference answer is JSON; else exact match first for short answers
    (a label, a name: at most SHORT_ANSWER words for most rows) and ROUGE-L first for longer ones, where
    an exact match is too rare to tell two models apart. The first is the one a verdict uses."""
    answers = [ex.messages[-1]["content"] for ex in rows]
    if all(a.lstrip().startswith(("{", "[")) and json_valid(a, "") for a in answers):
        return ("json_fields", "json_valid", "exact")
    lengths = sorted(len(words(a)) for a in answers)
    if lengths and lengths[len(lengths) // 2] > SHORT_ANSWER:
        return ("rougeL", "f1", "exact")
    return ("exact", "f1", "rougeL")


SHORT_ANSWER = 5
