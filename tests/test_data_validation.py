"""Bad input is refused before training, each problem naming its row, its field and the fix."""

from __future__ import annotations


import re

import pytest

from jupyter_finetune.data import DataError, prepare, read_text, tokens
from helpers import chat, good_rows, jsonl

LONG = " ".join(["printer"] * 400)
HUGE = "printer " * 250_000


def _prepare(rows, tokenizer, **kw):
    kw.setdefault("split", 0.0)
    return prepare(read_text(jsonl(rows)), name="tickets", tokenizer=tokenizer, model="tiny", **kw)


def _with(row: int, value) -> list:
    """Sixty good rows with line ``row`` (1-based) replaced."""
    rows: list = good_rows(60)
    rows[row - 1] = value
    return rows


def _msgs(*pairs) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


BAD = [
    ("invalid_json", 7, '{"messages": [{"role": "user", "content": "hi"}', "invalid JSON"),
    ("not_an_object", 8, "[1, 2]", "expected a JSON object"),
    ("missing_key", 9, {"msgs": chat(1)["messages"]}, "missing key 'messages'"),
    ("no_messages", 10, {"messages": []}, "non-empty list"),
    ("missing_role", 11, {"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}, "has no 'role'"),
    ("unknown_role", 12, _msgs(("human", "hi"), ("assistant", "x")), "unknown role 'human'"),
    ("missing_content", 13, {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "has no 'content'"),
    ("not_a_string", 14, {"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]}, "content is int"),
    ("not_a_string", 15, {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]}, "content is null"),
    ("empty_content", 16, _msgs(("user", "hi"), ("assistant", "   ")), "content is empty"),
    ("no_final_assistant", 17, _msgs(("user", "hi"), ("assistant", "x"), ("user", "thanks")), "no answer to learn"),
    ("system_not_first", 18, _msgs(("user", "hi"), ("system", "be terse"), ("assistant", "x")), "not first"),
    ("no_user_turn", 19, _msgs(("system", "s"), ("assistant", "x")), "no user message"),
    ("unsupported_tool", 20, {"messages": [{"role": "user", "content": "hi"},
                                           {"role": "assistant", "content": None, "tool_calls": []}]}, "tool"),
    ("no_loss_tokens", 21, _msgs(("user", LONG), ("assistant", "ok")), "train on nothing"),
]


@pytest.mark.parametrize("code,row,value,text", BAD, ids=[f"{b[0]}-row{b[1]}" for b in BAD])
def test_bad_row_is_named_with_its_row_number_and_a_fix(code, row, value, text, tiny_tokenizer):
    with pytest.raises(DataError) as info:
        _prepare(_with(row, value), tiny_tokenizer, max_length=256)
    found = [p for p in info.value.problems if p.code == code]
    assert found, [str(p) for p in info.value.problems]
    assert found[0].rows == (row,)
    assert text in found[0].message
    assert found[0].fix
    assert f"row {row}" in str(info.value)


def test_unknown_role_suggests_the_right_one(tiny_tokenizer):
    with pytest.raises(DataError) as info:
        _prepare(_with(5, _msgs(("user", "hi"), ("bot", "x"))), tiny_tokenizer)
    (p,) = [p for p in info.value.problems if p.code == "unknown_role"]
    assert p.field == "messages[1].role" and "'assistant'" in p.fix


def test_every_error_is_listed_at_once(tiny_tokenizer):
    rows = _with(3, "{oops")
    rows[5] = _msgs(("user", "hi"), ("assistant", ""))
    with pytest.raises(DataError) as info:
        _prepare(rows, tiny_tokenizer)
    assert {p.rows for p in info.value.problems if p.severity == "error"} == {(3,), (6,)}


def test_fewer_than_ten_rows_is_an_error(tiny_tokenizer):
    with pytest.raises(DataError, match="only 9 training examples"):
        _prepare(good_rows(9), tiny_tokenizer)


def test_fewer_than_fifty_rows_is_a_warning_that_is_kept(tiny_tokenizer):
    ds = _prepare(good_rows(20), tiny_tokenizer)
    assert [p.code for p in ds.warnings] == ["few"]


def test_exact_and_near_duplicates_name_the_row_they_repeat(tiny_tokenizer):
    rows = good_rows(60)
    rows[40] = chat(3)
    near = chat(4)
    near["messages"][1]["content"] = near["messages"][1]["content"].upper()
    rows[41] = near
    ds = _prepare(rows, tiny_tokenizer)
    found = {p.code: p for p in ds.warnings}
    assert found["duplicate"].rows == (41,) and "row 4" in found["duplicate"].message
    assert found["near_duplicate"].rows == (42,) and "row 5" in found["near_duplicate"].message


def test_test_rows_found_in_train_are_leakage_errors(tiny_tokenizer):
    test = read_text(jsonl([chat(100), chat(7), chat(101)]))
    with pytest.raises(DataError) as info:
        _prepare(good_rows(60), tiny_tokenizer, split=test)
    (p,) = [p for p in info.value.problems if p.code == "leakage"]
    assert p.rows == (2,) and "row 8" in p.message


def test_over_context_length_is_an_error(tiny_tokenizer):
    with pytest.raises(DataError) as info:
        _prepare(_with(30, _msgs(("user", "hi"), ("assistant", LONG))), tiny_tokenizer, context_length=128)
    (p,) = [p for p in info.value.problems if p.code == "over_context"]
    assert p.rows == (30,) and "context of 128" in p.message


@pytest.mark.parametrize(("row", "context_length", "code", "message"), [
    (_msgs(("user", "hi"), ("assistant", HUGE)), 512, "over_context", r"at least [\d,]+ tokens \(2,000,\d+ characters\), "
                                                                     "more than the model's context of 512"),
    (_msgs(("user", HUGE), ("assistant", "ok")), None, "no_loss_tokens", r"the prompt alone is at least [\d,]+ tokens"),
])
def test_a_huge_row_is_refused_from_its_length_without_being_tokenized(tiny_tokenizer, monkeypatch, row,
                                                                        context_length, code, message):
    """A 50 MB row took 41 s and 5.5 GB to tokenize before it was refused; every text counted is seen here."""
    counted = []
    count_with = tokens.batch_counter

    def counting(tokenizer):
        count = count_with(tokenizer)
        return lambda texts: (counted.extend(map(len, texts)), count(texts))[1]

    monkeypatch.setattr(tokens, "batch_counter", counting)
    with pytest.raises(DataError) as info:
        _prepare(_with(30, row), tiny_tokenizer, context_length=context_length)
    (p,) = info.value.problems
    assert (p.code, p.rows) == (code, (30,)) and re.search(message, p.message), p.message
    assert counted and max(counted) < 10_000  # the other rows were counted, the huge one never


def test_answer_cut_by_max_length_is_a_warning_with_the_length_to_use(tiny_tokenizer):
    ds = _prepare(_with(30, _msgs(("user", "hi"), ("assistant", LONG))), tiny_tokenizer, max_length=128)
    (p,) = [p for p in ds.warnings if p.code == "truncated"]
    assert p.rows == (30,) and "raise --max-length" in p.fix
    assert ds.stats.truncated == 1


def test_unknown_keys_are_warned_once_with_all_rows(tiny_tokenizer):
    rows = good_rows(60)
    rows[2]["weight"] = 1
    rows[9]["weight"] = 0
    ds = _prepare(rows, tiny_tokenizer)
    (p,) = [p for p in ds.warnings if p.code == "unknown_key"]
    assert p.rows == (3, 10) and p.field == "weight"


def test_unrecognised_layout_names_the_keys_found(tiny_tokenizer):
    with pytest.raises(DataError, match=r"cannot tell the data format from the keys \['answer', 'question'\]"):
        _prepare([{"question": "q", "answer": "a"}] * 20, tiny_tokenizer)


def test_errors_store_nothing(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError):
        _prepare(_with(3, "{oops"), tiny_tokenizer)
    assert not (tmp_path / "ft_data").exists()


def test_message_lists_problems_and_says_nothing_was_stored(tiny_tokenizer):
    with pytest.raises(DataError) as info:
        _prepare(_with(3, "{oops"), tiny_tokenizer)
    assert str(info.value).startswith("tickets: 1 error(s); nothing was stored or trained.")
