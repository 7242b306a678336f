"""Batched greedy generation: left padding, the model's chat template, the KV cache."""

from __future__ import annotations

from typing import Any


def generate(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], *, max_new_tokens: int = 64,
             batch_size: int = 8) -> list[str]:
    """The model's answer to each conversation (which ends with the user's turn)."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    answers: list[str] = []
    for start in range(0, len(conversations), batch_size):
        batch = conversations[start:start + batch_size]
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in batch]
        enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        answers += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [a.strip() for a in answers]
