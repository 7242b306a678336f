"""The example data on the packaged SmolLM2: counts equal its real chat template, tokenized."""

from __future__ import annotations

from pathlib import Path

import pytest

import jupyter_finetune as ft
from jupyter_finetune.models import load_tokenizer

EXAMPLE = Path(__file__).parents[1] / "examples" / "data" / "tickets.jsonl"


@pytest.mark.smollm2
def test_example_tickets_on_smollm2_count_exactly_what_the_template_tokenizes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = ft.load_data("tickets", EXAMPLE)
    assert (len(ds.train), len(ds.test), ds.warnings) == (216, 24, [])
    tokenizer = load_tokenizer("smollm2-135m")
    for ex, full, prompt in list(zip(ds.train, ds.train_lengths.full, ds.train_lengths.prompt))[:40]:
        assert full == len(tokenizer.apply_chat_template(ex.messages, tokenize=True, return_dict=False))
        assert prompt == len(tokenizer.apply_chat_template(ex.messages[:-1], tokenize=True, return_dict=False,
                                                           add_generation_prompt=True))
    loss = "".join(t.text for t in ds.preview(0) if t.carries_loss)
    assert loss.startswith(ds.train[0].messages[-1]["content"] + "<|im_end|>")
