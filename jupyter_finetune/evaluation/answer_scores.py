"""How likely a model finds an answer after its prompt: the log-probability of the answer's tokens.

Preference accuracy (does the chosen answer score above the rejected one?) and the forgetting check
(perplexity of reference answers to general prompts) both read this, scored in padded batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AnswerLogp:
    """One answer's log-probability given its prompt: the sum over its tokens, and how many there are."""

    total: float
    tokens: int

    @property
    def mean(self) -> float:
        return self.total / max(self.tokens, 1)


TOKENS_PER_BATCH = 2048
"""Padded tokens scored in one forward pass: short answers go many at a time, and the logits of a batch
(tokens x vocabulary, 0.5 GB at 128k words in bf16) stay bounded for long ones."""


def _encoded(tokenizer: Any, prompt: list[dict[str, str]], answer: str) -> tuple[list[int], int]:
    """The prompt and answer rendered with the chat template, as training renders them, and where the answer
    starts."""
    context = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
    start = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    return tokenizer(full, add_special_tokens=False)["input_ids"], start


def _batches(lengths: list[int]) -> list[list[int]]:
    """Indices by length, grouped so that a batch padded to its longest stays within TOKENS_PER_BATCH."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batches and (len(batches[-1]) + 1) * lengths[i] <= TOKENS_PER_BATCH:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def answer_logps(model: Any, tokenizer: Any, items: list[tuple[list[dict[str, str]], str]]) -> list[AnswerLogp]:
    """Each (prompt, answer)'s answer tokens scored after its prompt, in padded batches."""
    import torch

    encoded = [_encoded(tokenizer, prompt, answer) for prompt, answer in items]
    scores: list[AnswerLogp] = [AnswerLogp(0.0, 0)] * len(items)
    for batch in _batches([len(ids) for ids, _ in encoded]):
        width = max(len(encoded[i][0]) for i in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(batch):
            tokens = encoded[i][0]
            ids[row, :len(tokens)] = torch.tensor(tokens)
            mask[row, :len(tokens)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            for row, i in enumerate(batch):
                tokens, start = encoded[i]
                answer = ids[row, start:len(tokens)].to(logits.device)
                picked = torch.log_softmax(logits[row, start - 1:len(tokens) - 1].float(), dim=-1)
                scores[i] = AnswerLogp(float(picked.gather(-1, answer[:, None]).sum()), int(answer.numel()))
    return scores
