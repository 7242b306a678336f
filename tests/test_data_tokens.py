"""Token counts equal what the trainer sees: the real template and the real tokenizer."""

from __future__ import annotations

import pytest

from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.data.formats import Example
from jupyter_finetune.data.render import ChatRenderer
from jupyter_finetune.data.tokens import count_tokens
from helpers import chat, good_rows

TRIMMING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _real_counts(tokenizer, examples):
    full = [len(tokenizer.apply_chat_template(e.messages, tokenize=True, return_dict=False)) for e in examples]
    prompt = [len(tokenizer.apply_chat_template(e.messages[:-1], tokenize=True, add_generation_prompt=True,
                                                return_dict=False)) for e in examples]
    return full, prompt


def _examples(rows):
    return [Example(i + 1, r["messages"]) for i, r in enumerate(rows)]


def test_counts_match_the_tokenized_chat_template_row_by_row(tiny_tokenizer):
    rows = good_rows(300) + [chat(i, system=None) for i in range(300, 320)]
    examples = _examples(rows)
    _, lengths, problems = count_tokens(examples, ChatRenderer(tiny_tokenizer))
    assert not problems
    assert (lengths.full, lengths.prompt) == _real_counts(tiny_tokenizer, examples)


def test_template_that_trims_content_is_still_counted_exactly(tiny_tokenizer):
    tokenizer = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer,
                                         eos_token=tiny_tokenizer.eos_token, pad_token=tiny_tokenizer.pad_token)
    tokenizer.chat_template = TRIMMING_TEMPLATE
    rows = good_rows(40)
    rows[5]["messages"][1]["content"] = "  padded question with spaces   "
    examples = _examples(rows)
    _, lengths, _ = count_tokens(examples, ChatRenderer(tokenizer))
    assert (lengths.full, lengths.prompt) == _real_counts(tokenizer, examples)


def test_template_that_rejects_a_conversation_names_the_row(tiny_tokenizer):
    tokenizer = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer,
                                         eos_token=tiny_tokenizer.eos_token, pad_token=tiny_tokenizer.pad_token)
    tokenizer.chat_template = ("{% for m in messages %}{% if loop.index0 > 0 and m['role'] == messages[loop.index0 - 1]['role'] %}"
                               "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
                               "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    rows = good_rows(20)
    rows[3]["messages"].insert(2, {"role": "user", "content": "and another thing"})
    kept, _, problems = count_tokens(_examples(rows), ChatRenderer(tokenizer))
    assert len(kept) == 19
    (p,) = problems
    assert p.rows == (4,) and "roles must alternate" in p.message


def test_model_without_chat_template_falls_back_to_chatml_with_a_warning(tiny_tokenizer):
    tokenizer = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer,
                                         eos_token=tiny_tokenizer.eos_token, pad_token=tiny_tokenizer.pad_token)
    ds = prepare(read_records(good_rows(60)), name="d", tokenizer=tokenizer, model="tiny", split=0.0)
    assert "no_chat_template" in {p.code for p in ds.warnings}
    assert [t.text for t in ds.preview(0)][:1] == ["<|im_start|>"]


def test_preview_marks_exactly_the_answer_and_end_token_as_loss_bearing(tiny_tokenizer):
    ds = prepare(read_records(good_rows(60)), name="d", tokenizer=tiny_tokenizer, model="tiny", split=0.0)
    tokens = ds.preview(0)
    loss_text = "".join(t.text for t in tokens if t.carries_loss)
    answer = ds.train[0].messages[-1]["content"]
    assert loss_text.startswith(answer) and "<|im_end|>" in loss_text
    assert "<|im_start|>assistant" not in loss_text
    assert sum(t.carries_loss for t in tokens) == ds.train_lengths.full[0] - ds.train_lengths.prompt[0]


def test_preview_strikes_tokens_past_max_length(tiny_tokenizer):
    ds = prepare(read_records(good_rows(60)), name="d", tokenizer=tiny_tokenizer, model="tiny", split=0.0,
                 max_length=40)
    tokens = ds.preview(0)
    assert len(tokens) > 40
    assert [t.cut for t in tokens] == [i >= 40 for i in range(len(tokens))]


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_split_is_deterministic_by_seed_and_independent_of_row_order(fraction, tiny_tokenizer):
    rows = good_rows(80)
    def test_rows(data, seed):
        ds = prepare(read_records(data), name="d", tokenizer=tiny_tokenizer, model="tiny", split=fraction, seed=seed)
        return sorted(e.messages[1]["content"] for e in ds.test)
    first = test_rows(rows, 0)
    assert len(first) == round(80 * fraction)
    assert test_rows(rows, 0) == first
    assert test_rows(list(reversed(rows)), 0) == first
    assert test_rows(rows, 1) != first


def test_copies_of_an_example_stay_on_one_side_of_the_split(tiny_tokenizer):
    rows = good_rows(60) + [chat(i) for i in range(60)]
    ds = prepare(read_records(rows), name="d", tokenizer=tiny_tokenizer, model="tiny", split=0.2)
    train = {e.messages[1]["content"] for e in ds.train}
    assert not train & {e.messages[1]["content"] for e in ds.test}


def test_version_changes_with_content_and_split_not_with_source_kind(tiny_tokenizer, tmp_path):
    rows = good_rows(60)
    def version(data, **kw):
        return prepare(read_records(data), name="d", tokenizer=tiny_tokenizer, model="tiny", **kw).version
    assert version(rows) == version([dict(r) for r in rows])
    assert version(rows) != version(rows, seed=3)
    assert version(rows) != version(rows[:-1])


def test_a_runs_copy_of_the_data_restores_the_same_rows_split_and_version(tiny_tokenizer, tmp_path):
    from jupyter_finetune.data import restore
    from jupyter_finetune.runs import RunSettings, RunStore

    ds = prepare(read_records(good_rows(60)), name="tickets", tokenizer=tiny_tokenizer, model="tiny")
    run = RunStore.at(tmp_path).create("r")
    run.begin(RunSettings({"model": "tiny"}, "quick", "hf", "tiny"), ds.manifest(), ds.jsonl())
    manifest = run.manifest()
    assert (manifest.train_rows, manifest.test_rows, manifest.version) == (54, 6, ds.version)
    back = restore(manifest, run.data_rows(), tiny_tokenizer)
    assert back.version == ds.version and [ex.messages for ex in back.test] == [ex.messages for ex in ds.test]
    assert back.stats == ds.stats and len(back.warnings) == 0


def test_to_hf_gives_trl_prompt_completion_rows(tiny_tokenizer):
    ds = prepare(read_records(good_rows(60)), name="d", tokenizer=tiny_tokenizer, model="tiny")
    hf = ds.to_hf("train")
    assert hf.column_names == ["prompt", "completion"]
    assert hf[0]["completion"][0]["role"] == "assistant" and hf[0]["prompt"][-1]["role"] == "user"


def test_counts_stay_exact_after_a_padded_call_on_the_same_tokenizer(tiny_tokenizer):
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)  # the session fixture must keep padding off
    before = count_tokens([Example(i, chat(i)["messages"]) for i in range(6)], ChatRenderer(tokenizer))[1]
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer(["a", "a much longer text that pads the first one"], padding=True)  # as batched generation does
    after = count_tokens([Example(i, chat(i)["messages"]) for i in range(6)], ChatRenderer(tokenizer))[1]
    assert after == before
