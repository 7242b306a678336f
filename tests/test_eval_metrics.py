"""Metrics, with expected values worked out by hand."""

from __future__ import annotations

import pytest

from jupyter_finetune.evaluation.metrics import (contains, exact, f1, json_fields, json_valid, resolve_metric, rouge_l,
                                                score)

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


@pytest.mark.parametrize("prediction,reference,expected", [
    ("the cat sat", "the cat sat", 1.0),
    # 2 common words of 3 predicted and 4 expected: P 2/3, R 1/2 -> 2PR/(P+R) = 4/7
    ("the dog sat", "the cat sat down", 4 / 7),
    ("The, CAT!", "the cat", 1.0),  # case and punctuation do not count
    ("a a b", "a b b", 2 / 3),  # a bag of words: min counts a:1, b:1 -> P 2/3, R 2/3
    ("", "", 1.0),
    ("", "something", 0.0),
    ("日本語", "日本", 0.8),  # CJK characters are words: P 2/3, R 1
])
def test_token_f1_by_hand(prediction, reference, expected):
    assert f1(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize("prediction,reference,expected", [
    ("the cat sat on the mat", "the cat sat on the mat", 1.0),
    # LCS "the cat on mat"... words: pred the cat lay on a mat / ref the cat sat on the mat:
    # LCS = the cat on mat (4) -> P 4/6, R 4/6 -> F 2/3
    ("the cat lay on a mat", "the cat sat on the mat", 2 / 3),
    # order matters for ROUGE-L but not for F1: LCS of "b a" and "a b" is 1 -> F 1/2
    ("b a", "a b", 0.5),
    ("très bien", "Très bien !", 1.0),  # accented words survive (rouge-score's own tokenizer drops them)
])
def test_rouge_l_by_hand(prediction, reference, expected):
    assert rouge_l(prediction, reference) == pytest.approx(expected)
    if prediction == "b a":
        assert f1(prediction, reference) == 1.0


def test_user_metric_from_a_module_gets_the_row(tmp_path, monkeypatch):
    (tmp_path / "my_metrics.py").write_text(
        "def mentions_user(prediction, reference, row):\n"
        "    return float(row['messages'][-2]['content'].split()[0] in prediction)\n"
        "def broken(prediction, reference, row):\n"
        "    return 'yes'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    name, fn = resolve_metric("my_metrics:mentions_user")
    row = {"messages": [{"role": "user", "content": "Printer broken"}, {"role": "assistant", "content": "x"}]}
    assert name == "mentions_user"
    assert score(name, fn, "the Printer team", "x", row) == 1.0 and score(name, fn, "nope", "x", row) == 0.0
    with pytest.raises(ValueError, match="'broken' returned 'yes'.*number in \\[0, 1\\]"):
        score("broken", resolve_metric("my_metrics:broken")[1], "a", "b", row)
    with pytest.raises(ValueError, match="cannot load 'nothing' from module 'my_metrics'"):
        resolve_metric("my_metrics:nothing")
    with pytest.raises(ValueError, match="unknown metric 'bleu': use exact, contains, json_valid, json_fields, f1, rougeL"):
        resolve_metric("bleu")


@pytest.mark.parametrize("prediction, reference, expected", [
    ("You can return it within 45 days of delivery.", "45 days", 1.0),
    ("45 DAYS!", "45 days", 1.0),  # case and punctuation aside
    ("Within 45 working days.", "45 days", 0.0),  # the words must come together
    ("days: 45", "45 days", 0.0),  # and in order
    ("It costs 6.90 euros.", "6.90 euros", 1.0),
    ("It costs 16.90 euros.", "6.90 euros", 0.0),  # whole words, not a substring
    ("", "", 1.0),
    ("anything", "", 0.0),
])
def test_contains_finds_the_reference_words_together_in_the_answer(prediction, reference, expected):
    assert contains(prediction, reference) == expected
