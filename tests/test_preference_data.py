"""Preference pairs with the real tiny tokenizer: every layout gives the same pairs, bad pairs are named by
row and field, both sides are counted and shown, and a DPO run's copy restores the same pairs."""

from __future__ import annotations

import json
import re

import pytest

from jupyter_finetune.data import DataError, prepare, read_text, restore
from jupyter_finetune.data.formats import detect_format
from jupyter_finetune.data.length import MOST_VALIDATION_ROWS, VALIDATION
from jupyter_finetune.data.pair_checks import LONGER_RATIO, MIN_PAIRS_FOR_BIAS
from helpers import good_rows, jsonl, run_cell

SYSTEM = "You sort support tickets. Answer with JSON only."
N = 20


def _pair(i: int) -> tuple[str, str, str]:
    """A ticket, the preferred concise JSON answer and a rejected verbose one."""
    return (f"Ticket {i}: the printer on floor {i % 7} is broken, case {i * 37}.",
            json.dumps({"team": "it", "priority": "high" if i % 2 else "low", "case": i * 37}),
            f"I think this is probably for the it team, maybe priority {'high' if i % 2 else 'low'}? Case {i * 37}.")


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _head(user: str, system: bool) -> list[dict]:
    return ([_msg("system", SYSTEM)] if system else []) + [_msg("user", user)]


def openai(i: int, system: bool = True) -> dict:
    user, chosen, rejected = _pair(i)
    return {"input": {"messages": _head(user, system)}, "preferred_output": [_msg("assistant", chosen)],
            "non_preferred_output": [_msg("assistant", rejected)]}


def trl_text(i: int) -> dict:
    user, chosen, rejected = _pair(i)
    return {"prompt": user, "chosen": chosen, "rejected": rejected}


def trl_conversational(i: int, system: bool = True) -> dict:
    user, chosen, rejected = _pair(i)
    return {"prompt": _head(user, system), "chosen": [_msg("assistant", chosen)],
            "rejected": [_msg("assistant", rejected)]}


def trl_implicit(i: int, system: bool = True) -> dict:
    user, chosen, rejected = _pair(i)
    return {"chosen": _head(user, system) + [_msg("assistant", chosen)],
            "rejected": _head(user, system) + [_msg("assistant", rejected)]}


def hh_text(i: int) -> dict:
    user, chosen, rejected = _pair(i)
    return {"chosen": f"\n\nHuman: {user}\n\nAssistant: {chosen}",
            "rejected": f"\n\nHuman: {user}\n\nAssistant: {rejected}"}


def _prepare(rows: list, tokenizer, **kw):
    kw.setdefault("split", 0.1)
    return prepare(read_text(jsonl(rows)), name="prefs", tokenizer=tokenizer, model="tiny", **kw)


def _problems(rows: list, tokenizer, **kw) -> list:
    with pytest.raises(DataError) as info:
        _prepare(rows, tokenizer, **kw)
    return info.value.problems


def _with(row: int, value, layout=trl_conversational) -> list:
    """N good pairs with line ``row`` (1-based) replaced."""
    rows: list = [layout(i) for i in range(N)]
    rows[row - 1] = value
    return rows


def _ids(tokenizer, messages: list[dict], **kw) -> list[int]:
    """Rendered with the model's template and tokenized for real, as TRL does."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, **kw)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _sequences(tokenizer, example) -> tuple[int, int]:
    """Both sides' token counts."""
    prompt = example.messages[:-1]
    return tuple(len(_ids(tokenizer, prompt + [_msg("assistant", answer)]))
                 for answer in (example.messages[-1]["content"], example.rejected))


def _same_pairs(datasets) -> None:
    first = datasets[0]
    assert first.format == "preference" and len(first.train) + len(first.test) == N and first.test
    for ds in datasets[1:]:
        assert (ds.train, ds.test, ds.version) == (first.train, first.test, first.version)


def test_every_layout_gives_the_same_pairs(tiny_tokenizer):
    with_system = [_prepare([layout(i) for i in range(N)], tiny_tokenizer)
                   for layout in (openai, trl_conversational, trl_implicit)]
    _same_pairs(with_system)
    assert with_system[0].train[0].messages[0] == _msg("system", SYSTEM)
    without = [_prepare(rows, tiny_tokenizer) for rows in (
        [openai(i, system=False) for i in range(N)], [trl_conversational(i, system=False) for i in range(N)],
        [trl_implicit(i, system=False) for i in range(N)], [trl_text(i) for i in range(N)],
        [hh_text(i) for i in range(N)])]
    _same_pairs(without)
    ex = without[0].example(0)
    user, chosen, rejected = _pair(ex.row - 1)
    assert (ex.messages, ex.rejected) == ([_msg("user", user), _msg("assistant", chosen)], rejected)
    assert with_system[0].version != without[0].version


@pytest.mark.parametrize("layout", [openai, trl_text, trl_conversational, trl_implicit, hh_text])
def test_auto_detection_picks_preference_for_each_layout(layout):
    assert detect_format(read_text(jsonl([layout(i) for i in range(N)]))) == "preference"


def test_chat_and_prompt_completion_data_are_still_detected_as_before():
    assert detect_format(read_text(jsonl(good_rows(20)))) == "messages"
    assert detect_format(read_text(jsonl([{"prompt": "a", "completion": "b"}] * 3))) == "prompt_completion"


def _two_messages(i: int) -> dict:
    row = trl_conversational(i)
    row["rejected"] = [_msg("assistant", "No."), _msg("assistant", "Really no.")]
    return row


def _differing_prompts(i: int) -> dict:
    row = trl_implicit(i)
    row["rejected"][1] = _msg("user", "Another ticket.")
    return row


BAD = [  # code, row, the bad line, its field (None: the row has no field), words of the message
    ("same_answers", 4, {**trl_text(3), "rejected": _pair(3)[1]}, "rejected", "identical"),
    ("same_answers", 5, {"chosen": hh_text(4)["chosen"], "rejected": hh_text(4)["chosen"]}, "rejected", "identical"),
    ("empty_content", 6, {**trl_conversational(5), "rejected": [_msg("assistant", "  ")]}, "rejected[0].content",
     "empty"),
    ("empty_content", 7, {**trl_text(6), "chosen": ""}, "chosen", "empty"),
    ("prompts_differ", 8, _differing_prompts(7), "rejected", "differ before their last answer (message 2)"),
    ("missing_key", 9, {"prompt": "hi", "chosen": "a"}, "rejected", "missing key 'rejected'"),
    ("missing_key", 10, {k: v for k, v in openai(9).items() if k != "input"}, "input", "missing key 'input'"),
    ("not_one_answer", 11, _two_messages(10), "rejected", "holds 2 message(s)"),
    ("not_an_object", 12, "[1, 2]", None, "expected a JSON object"),
    ("invalid_json", 13, '{"prompt": "hi", "chosen": "a", "rejected": "b"', None, "invalid JSON"),
]


@pytest.mark.parametrize("code,row,line,field,words", BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_each_bad_pair_is_named_by_row_and_field(tiny_tokenizer, code, row, line, field, words):
    problems = _problems(_with(row, line), tiny_tokenizer)
    [problem] = [p for p in problems if p.severity == "error"]
    assert (problem.code, problem.rows, problem.field) == (code, (row,), field)
    assert words in problem.message and problem.fix


def _long_pair(i: int, shared: int, tail: str) -> dict:
    """A pair whose two answers share ``shared`` words before they differ."""
    user, _, _ = _pair(i)
    common = " ".join(["printer"] * shared)
    return {"prompt": _head(user, True), "chosen": [_msg("assistant", f"{common} fixed {tail}")],
            "rejected": [_msg("assistant", f"{common} broken {tail}")]}


def test_pairs_cut_to_the_same_tokens_are_an_error_naming_them_and_the_length_that_keeps_them_apart(tiny_tokenizer):
    rows = _with(3, _long_pair(2, 150, "done"))
    rows[7] = _long_pair(7, 120, "now")
    [problem] = [p for p in _problems(rows, tiny_tokenizer, max_length=128) if p.severity == "error"]
    assert (problem.code, problem.rows) == ("cut_alike", (3, 8)) and "same tokens" in problem.message
    needed = int(re.search(r"--max-length to (\d+) or more", problem.fix).group(1))
    chosen = _ids(tiny_tokenizer, rows[2]["prompt"] + rows[2]["chosen"])
    rejected = _ids(tiny_tokenizer, rows[2]["prompt"] + rows[2]["rejected"])
    differ = next(k for k, (a, b) in enumerate(zip(chosen, rejected)) if a != b)
    assert needed == differ + 1 and chosen[:differ] == rejected[:differ]  # the longer pair's first difference
    ds = _prepare(rows, tiny_tokenizer, max_length=needed)  # that length keeps both pairs apart
    assert [p.rows for p in ds.warnings if p.code == "truncated"] == [(3,)]  # cut after its answers differ
    assert [p.code for p in _problems(rows, tiny_tokenizer, max_length=needed - 1)
            if p.severity == "error"] == ["cut_alike"]


def test_a_rejected_side_past_the_max_length_is_a_truncated_pair(tiny_tokenizer):
    row = trl_conversational(4)
    row["rejected"] = [_msg("assistant", " ".join(["printer"] * 200))]
    ds = _prepare(_with(5, row), tiny_tokenizer, max_length=128)
    [truncated] = [p for p in ds.warnings if p.code == "truncated"]
    assert truncated.rows == (5,) and ds.stats.longest > 128
    with pytest.raises(DataError) as info:
        _prepare(_with(5, row), tiny_tokenizer, context_length=128)
    [over] = [p for p in info.value.problems if p.severity == "error"]
    assert (over.code, over.rows, over.field) == ("over_context", (5,), "rejected")


def _lengths_pair(i: int, chosen_words: int, rejected_words: int) -> dict:
    user, _, _ = _pair(i)
    return {"prompt": user, "chosen": " ".join(["printer"] * chosen_words) + f" case {i}",
            "rejected": " ".join(["broken"] * rejected_words) + f" case {i}"}


def test_chosen_systematically_longer_is_a_warning_with_the_numbers(tiny_tokenizer):
    ds = _prepare([_lengths_pair(i, 30, 10) for i in range(N)], tiny_tokenizer, split=0.0)
    [bias] = [p for p in ds.warnings if p.code == "length_bias"]
    prompts = [len(_ids(tiny_tokenizer, ex.messages[:-1], add_generation_prompt=True)) for ex in ds.train]
    chosen, rejected = zip(*(_sequences(tiny_tokenizer, ex) for ex in ds.train))
    ratio = (sum(chosen) - sum(prompts)) / (sum(rejected) - sum(prompts))
    assert "100% of the pairs (20 of 20)" in bias.message and f"{ratio:.1f}x as long" in bias.message
    assert "shorter answer wins" in bias.fix and "%ft_eval" in bias.fix


@pytest.mark.parametrize("chosen_words,rejected_words", [
    ((30, 10), (10, 30)),  # balanced: each side the longer one in half of the pairs
    ((11,), (10,)),  # chosen always longer, but by less than LONGER_RATIO
], ids=["balanced", "slightly-longer"])
def test_no_length_bias_warning_without_a_systematic_bias(tiny_tokenizer, chosen_words, rejected_words):
    rows = [_lengths_pair(i, chosen_words[i % len(chosen_words)], rejected_words[i % len(rejected_words)])
            for i in range(N)]
    ds = _prepare(rows, tiny_tokenizer, split=0.0)
    assert not [p for p in ds.warnings if p.code == "length_bias"]
    chosen, rejected = ds.train_lengths.answer, ds.train_lengths.rejected_answer
    share = sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)
    assert share == 0.5 if len(chosen_words) == 2 else share == 1 and 1 < sum(chosen) / sum(rejected) < LONGER_RATIO


def test_too_few_pairs_say_nothing_about_length(tiny_tokenizer):
    rows = [_lengths_pair(i, 30, 10) for i in range(MIN_PAIRS_FOR_BIAS - 1)]
    problems = _problems(rows, tiny_tokenizer, split=0.0)  # too few pairs to train is an error of its own
    assert [p.code for p in problems] == ["too_few"] and "9 training pairs" in problems[0].message


def test_tokens_and_cost_count_both_sides_of_every_pair(tiny_tokenizer):
    ds = _prepare([trl_conversational(i) for i in range(60)], tiny_tokenizer)
    sides = [_sequences(tiny_tokenizer, ex) for ex in ds.train]
    assert ds.train_lengths.full == [c for c, _ in sides] and ds.train_lengths.rejected == [r for _, r in sides]
    assert ds.stats.examples == len(ds.train) and ds.stats.total == sum(c + r for c, r in sides)
    assert ds.stats.max == max(c + r for c, r in sides) and ds.stats.longest == max(max(s) for s in sides)
    split = ds.validation_split(VALIDATION, MOST_VALIDATION_ROWS)
    kept = [_sequences(tiny_tokenizer, ex) for ex in split.train]
    assert ds.cost.tokens_per_epoch == split.train_tokens == sum(c + r for c, r in kept)
    chosen_only = prepare(read_text(jsonl([{"messages": ex.messages} for ex in ds.train])), name="sft",
                          tokenizer=tiny_tokenizer, model="tiny", split=0.0)
    assert chosen_only.stats.total == sum(c for c, _ in sides) and chosen_only.train_lengths.rejected is None
    text = repr(ds)
    assert f"{len(ds.train)} train / {len(ds.test)} test pairs (preference)" in text
    assert f"tokens/pair (prompt+chosen and prompt+rejected)" in text and f"{ds.stats.total:,} train tokens" in text
    assert "test rows (messages)" in repr(chosen_only)


def test_preview_shows_each_side_after_the_shared_prompt(tiny_tokenizer):
    ds = _prepare([trl_conversational(i) for i in range(N)], tiny_tokenizer)
    ex = ds.example(0)
    chosen, rejected = ds.preview(0), ds.preview(0, side="rejected")
    loss = lambda tokens: "".join(t.text for t in tokens if t.carries_loss)  # noqa: E731
    prompt = lambda tokens: "".join(t.text for t in tokens if not t.carries_loss)  # noqa: E731
    assert loss(chosen) == ex.messages[-1]["content"] + "<|im_end|>\n"
    assert loss(rejected) == ex.rejected + "<|im_end|>\n" and prompt(chosen) == prompt(rejected)
    assert len(rejected) == ds.train_lengths.rejected[0]


def test_ft_data_shows_a_report_with_both_sides_of_a_pair_highlighted(shell, tiny_model_dir):
    _, shown, _ = run_cell(shell, f"%%ft_data prefs --model {tiny_model_dir}\n"
                                  + jsonl([openai(i) for i in range(N)]))
    ds = shell.user_ns["prefs"]
    assert ds.is_preference and shown.startswith(f"<FtDataset 'prefs' v{ds.version}: 18 train / 2 test pairs")
    html = shell.display_formatter.format(ds)[0]["text/html"]
    assert "tokens per pair" in html and "What training sees (train pair 1)" in html
    prompt, rest = html.split("<b>chosen</b>")
    chosen, rejected = rest.split("<b>rejected</b>")
    assert SYSTEM in prompt and "class='loss'" not in prompt.split("<b>prompt</b>")[1]
    first = ds.example(0)
    for side, answer in ((chosen, first.messages[-1]["content"]), (rejected, first.rejected)):
        assert "class='loss'" in side
        loss = "".join(part.split("</span>")[0] for part in side.split("<span class='loss'>")[2:])
        assert loss.startswith(answer.replace('"', "&quot;")[:12])


def test_a_dpo_runs_copy_of_the_data_restores_the_same_pairs(tiny_tokenizer, tiny_model_dir, tmp_path):
    from jupyter_finetune import api

    ds = prepare(read_text(jsonl([trl_conversational(i) for i in range(N)])), name="prefs",
                 tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    job = api.prepare_training(ds, runs_dir=tmp_path / "runs", method="dpo", steps=2, batch_size=2, lr=1e-3,
                               validation=0.0, save_steps=None)
    assert job.train().status == "completed"
    back = restore(job.run.manifest(), job.run.data_rows(), tiny_tokenizer)
    assert (back.format, back.train, back.test, back.version) == (ds.format, ds.train, ds.test, ds.version)
    assert (back.train_lengths, back.test_lengths, back.stats) == (ds.train_lengths, ds.test_lengths, ds.stats)
    assert job.run.manifest().train_tokens == ds.stats.total
