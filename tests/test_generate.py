"""Batched generation with the shared prompt start prefilled once answers as plain generate does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from jupyter_finetune.data import read_path
from jupyter_finetune.evaluation.generate import generate_timed
from jupyter_finetune.models import resolve_model

EXAMPLE = Path(__file__).parents[1] / "examples" / "data" / "tickets.jsonl"


@pytest.mark.slow
@pytest.mark.smollm2
def test_batched_answers_equal_plain_generate_row_by_row():
    path = resolve_model("smollm2-135m").path
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    chats = [raw.value["messages"] for raw in read_path(EXAMPLE)[:7]]
    shots = [turn for chat in chats[:2] for turn in chat[1:]]  # a few-shot prompt: a long shared start
    conversations = [[chat[0], *shots, chat[1]] for chat in chats[2:]]
    got = generate_timed(model, tokenizer, conversations, max_new_tokens=12, batch_size=3)
    assert len({a for a in got.answers}) > 1  # varied answers, so a wrong cache or mask would show
    for conversation, answer, prompt_tokens in zip(conversations, got.answers, got.prompt_tokens, strict=True):
        ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert answer == tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        assert prompt_tokens == ids["input_ids"].shape[1]


def test_no_conversations_need_no_model(tiny_tokenizer):
    assert generate_timed(None, tiny_tokenizer, []).answers == []
