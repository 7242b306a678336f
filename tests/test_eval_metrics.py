"""Metrics, with expected values worked out by hand."""

from __future__ import annotations

import pytest

from jupyter_finetune.evaluation.metrics import exact, json_fields, json_valid

REF = '{"team": "it", "priority": "high", "product": "router"}'


@pytest.mark.parametrize("prediction,expected", [
    (REF, 1.0),
    ('{"team": "it", "priority": "low", "product": "router"}', 2 / 3),
    ('{"team": "billing"}', 0.0),
    ('{"priority": "high", "extra": 1}', 1 / 3),
    ("The team is it.", 0.0),
    ('["it", "high"]', 0.0),
])
def test_json_fields_is_the_share_of_reference_fields_matched(prediction, expected):
    assert json_fields(prediction, REF) == pytest.approx(expected)


def test_json_valid_and_exact():
    assert json_valid(' {"a": 1} ', REF) == 1.0 and json_valid('{"a": 1', REF) == 0.0
    assert exact(" yes\n", "yes") == 1.0 and exact("Yes", "yes") == 0.0


def test_json_fields_falls_back_to_exact_for_non_object_references():
    assert json_fields("42", "42") == 1.0 and json_fields("41", "42") == 0.0
