"""Batched greedy generation: left padding, the model's chat template, the KV cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generation:
    """Answers to a list of conversations, with what they cost."""

    answers: list[str]
    prompt_tokens: list[int]
    new_tokens: list[int]
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return sum(self.new_tokens) / self.seconds if self.seconds else 0.0


def generate_timed(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], *,
                   max_new_tokens: int = 64, batch_size: int = 8) -> Generation:
    """The model's answer to each conversation (which ends with the user's turn), timed and counted."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    stops = _stop_ids(model, tokenizer)
    answers: list[str] = []
    prompt_tokens: list[int] = []
    new_tokens: list[int] = []
    start = time.perf_counter()
    for first in range(0, len(conversations), batch_size):
        batch = conversations[first:first + batch_size]
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in batch]
        enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        prompt_tokens += enc["attention_mask"].sum(dim=1).tolist()
        new_tokens += [_answer_length(ids, stops) for ids in new.tolist()]
        answers += tokenizer.batch_decode(new, skip_special_tokens=True)
    return Generation([a.strip() for a in answers], prompt_tokens, new_tokens, time.perf_counter() - start)


def generate(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], *, max_new_tokens: int = 64,
             batch_size: int = 8) -> list[str]:
    """The model's answer to each conversation (which ends with the user's turn)."""
    return generate_timed(model, tokenizer, conversations, max_new_tokens=max_new_tokens,
                          batch_size=batch_size).answers


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids | {tokenizer.eos_token_id} - {None}


def _answer_length(ids: list[int], stops: set[int]) -> int:
    """Generated tokens up to and including the first stop token (the rest is padding)."""
    for i, token in enumerate(ids):
        if token in stops:
            return i + 1
    return len(ids)
