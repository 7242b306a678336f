"""Metrics on one prediction against its reference: each returns a score in [0, 1]."""

from __future__ import annotations

import json
from typing import Any, Callable

Metric = Callable[[str, str], float]


def _json(text: str) -> Any:
    try:
        return json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None


def exact(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def json_valid(prediction: str, reference: str) -> float:
    return float(_json(prediction) is not None)


def json_fields(prediction: str, reference: str) -> float:
    """Share of the reference object's fields that the prediction has with the same value."""
    want, got = _json(reference), _json(prediction)
    if not isinstance(want, dict) or not want:
        return exact(prediction, reference)
    if not isinstance(got, dict):
        return 0.0
    return sum(got.get(k) == v for k, v in want.items()) / len(want)


METRICS: dict[str, Metric] = {"exact": exact, "json_valid": json_valid, "json_fields": json_fields}
