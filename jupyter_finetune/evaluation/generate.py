"""Batched greedy generation: the model's chat template, a shared-prompt KV cache, left padding.

Evaluation prompts share a long start (the system prompt; the examples of a few-shot prompt), so
that part is run through the model once per call and its KV cache copied into every batch; each
row then needs only its own tokens prefilled. Rows are laid out as
``[shared prefix][padding][own tokens]``: ``generate`` derives positions from the attention mask,
so the padding in the middle takes no position and no attention.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import FinetuneError
from ..models.oom import free_memory, is_out_of_memory


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

    def then(self, more: "Generation") -> "Generation":
        """These answers followed by ``more`` (a generation resumed where it stopped)."""
        return Generation(self.answers + more.answers, self.prompt_tokens + more.prompt_tokens,
                          self.new_tokens + more.new_tokens, self.seconds + more.seconds)


MOST_ROWS = {"cuda": 64, "cpu": 8}
"""The largest batch chosen from free memory. On a GPU larger batches keep raising throughput; on a CPU
8 rows already use the cores fully (bench/bench_eval.py), and more rows only add padding."""


class GenerationOutOfMemory(FinetuneError, MemoryError):
    """Out of memory with one row per batch, so there is no smaller batch to try; ``done`` holds the
    answers generated before it, in order, so that they need not be generated again."""

    def __init__(self, message: str, done: "Generation"):
        super().__init__(message)
        self.done = done


def generate_timed(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], *,
                   max_new_tokens: int = 64, batch_size: int | None = None) -> Generation:
    """The model's answer to each conversation (which ends with the user's turn), timed and counted.

    ``batch_size`` defaults to what free memory holds (``auto_batch_size``). Out of memory halves the
    batch and goes on with the same rows; at one row it raises GenerationOutOfMemory with the answers so far.
    """
    import torch

    if not conversations:
        return Generation([], [], [], 0.0)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    stops = _stop_ids(model, tokenizer)
    answers: list[str] = []
    new_tokens: list[int] = []
    start = time.perf_counter()
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
    shared = min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1)
    if batch_size is None:
        batch_size = auto_batch_size(model, max(map(len, prompts)) + max_new_tokens)

    def done() -> Generation:
        return Generation([a.strip() for a in answers], [len(p) for p in prompts[:len(answers)]], new_tokens,
                          time.perf_counter() - start)

    prefix = None
    # no_grad, not inference_mode: validation generates with the model being trained, and a tensor a
    # module caches under inference_mode could not be used by the next training step's backward
    with torch.no_grad(), _vocab_projection_weights_first(model):
        while len(answers) < len(prompts):
            rows = prompts[len(answers):len(answers) + batch_size]
            try:
                if shared and prefix is None:
                    prefix = _kv_cache(model(input_ids=torch.tensor([prompts[0][:shared]], device=model.device),
                                             use_cache=True))
                new = _generate_batch(model, rows, shared, prefix, tokenizer.pad_token_id, max_new_tokens, stops)
            except Exception as e:
                if not is_out_of_memory(e):
                    raise
                new = None
            if new is None:  # outside the except block, whose traceback pins the batch's tensors
                free_memory()
                if batch_size == 1:
                    raise GenerationOutOfMemory(
                        f"out of {model.device.type} memory generating one row of up to {len(rows[0]) + max_new_tokens}"
                        f" tokens, after {len(answers)} of {len(prompts)} answers: lower --max-new-tokens (now "
                        f"{max_new_tokens}) or --limit, or free memory (other models, processes) and run it again "
                        "with the same options, which continues from the answers kept so far", done())
                batch_size //= 2
                continue
            new_tokens += [len(row) for row in new]
            answers += tokenizer.batch_decode(new, skip_special_tokens=True)
    return done()


def auto_batch_size(model: Any, tokens: int) -> int:
    """Rows per batch that fit in free memory (the GPU's, or the host's on CPU) at ``tokens`` per row."""
    import psutil
    import torch

    from ..models.memory import ModelShape, generation_batch_size

    device = model.device
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    return generation_batch_size(ModelShape.from_config(model.config), free_bytes=free, tokens=tokens,
                                 dtype_bytes=dtype.itemsize, most=MOST_ROWS.get(device.type, MOST_ROWS["cpu"]))


def _generate_batch(model: Any, rows: list[list[int]], shared: int, prefix: Any, pad_id: int,
                    max_new_tokens: int, stops: set[int]) -> list[list[int]]:
    """The new tokens of each of ``rows``, up to and including its stop token.

    A row that stops leaves the batch: ``generate`` returns as soon as any row stops, the finished rows
    are taken out of the tokens, mask and KV cache, and the rest go on from where they were. Otherwise
    every row would decode until the longest answer ends, and on a CPU a step costs in proportion to
    the rows in it (bench/bench_eval.py).
    """
    import torch

    ids, mask = _layout(rows, shared, pad_id)
    ids, mask = ids.to(model.device), mask.to(model.device)
    cache = None
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.reorder_cache(torch.zeros(len(ids), dtype=torch.long, device=model.device))
    stop_ids = torch.tensor(sorted(stops), device=model.device)
    start = ids.shape[1]
    active = list(range(len(rows)))
    answers: list[list[int]] = [[] for _ in rows]
    while active:
        with warnings.catch_warnings():  # newer transformers call it `cache`; older know only this name
            warnings.filterwarnings("ignore", "`past_key_values` is deprecated", FutureWarning)
            out = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache,
                                 max_new_tokens=max_new_tokens - (ids.shape[1] - start), do_sample=False,
                                 use_cache=True, pad_token_id=pad_id, eos_token_id=sorted(stops),
                                 stopping_criteria=[_any_row_stops()(stop_ids)], return_dict_in_generate=True)
        sequences = out.sequences
        new = sequences[:, start:].tolist()
        going = [i for i, tokens in enumerate(new) if len(tokens) < max_new_tokens and not stops & set(tokens)]
        for i, row in enumerate(active):
            answers[row] = new[i][:_answer_length(new[i], stops)]
        if not going:
            break
        keep = torch.tensor(going, device=model.device)
        cache = _kv_cache(out)
        cache.batch_select_indices(keep)
        grown = torch.ones((len(active), sequences.shape[1] - mask.shape[1]), dtype=mask.dtype, device=mask.device)
        ids, mask = sequences[keep], torch.cat([mask, grown], dim=1)[keep]
        active = [active[i] for i in going]
    return answers


@functools.cache
def _any_row_stops() -> type:
    """The stopping criterion class, made on first use (transformers is not imported with the package)."""
    import torch
    from transformers import StoppingCriteria

    class AnyRowStops(StoppingCriteria):
        """The whole batch stops at the first step where any row emits a stop token."""

        def __init__(self, stop_ids: torch.Tensor):
            self.stop_ids = stop_ids

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            hit = bool(torch.isin(input_ids[:, -1], self.stop_ids).any())
            return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)

    return AnyRowStops


def _layout(prompts: list[list[int]], shared: int, pad_id: int) -> tuple[Any, Any]:
    """Token ids and attention mask for ``[shared prefix][padding][own tokens]`` rows."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        own = prompt[shared:]
        ids[row, :shared], mask[row, :shared] = torch.tensor(prompt[:shared]), 1
        ids[row, width - len(own):], mask[row, width - len(own):] = torch.tensor(own), 1
    return ids, mask


@contextlib.contextmanager
def _vocab_projection_weights_first(model: Any) -> Iterator[None]:
    """On CPU, compute the logits of a decoding step as ``(W @ x.T).T`` rather than ``x @ W.T``.

    Same sums in another order; with MKL, the vocabulary projection of 8 rows (49152 x 576 for
    SmolLM2) runs about 2.5x faster this way (torch 2.13, 2 cores: 32 ms vs 80 ms); end to end,
    SmolLM2 generates about 8% more tokens/s with it (16 ticket prompts, batch 8: 6.4 vs 5.9 tokens/s
    on 2 shared cores), with the same answers. The output embedding is swapped for a module computing it so,
    sharing the same weights, for the duration of the generation, then put back.
    """
    import torch

    head = model.get_output_embeddings()
    if model.device.type != "cpu" or type(head) is not torch.nn.Linear or head.weight.dtype != torch.float32:
        yield
        return
    model.set_output_embeddings(_weights_first_module()(head))
    try:
        yield
    finally:
        model.set_output_embeddings(head)


@functools.cache
def _weights_first_module() -> type:
    """The module class, made on first use (torch is not imported with the package)."""
    import torch

    class WeightsFirst(torch.nn.Module):
        """A Linear's projection computed as ``(W @ x.T).T`` (see ``_vocab_projection_weights_first``)."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            self.linear = linear

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w, b = self.linear.weight, self.linear.bias
            logits = (w @ x.reshape(-1, x.shape[-1]).T).T.reshape(*x.shape[:-1], w.shape[0])
            return logits if b is None else logits + b

    return WeightsFirst


def _kv_cache(output: Any) -> Any:
    """The KV cache of a forward pass (``cache`` in newer transformers, ``past_key_values`` before)."""
    return output["cache"] if "cache" in output else output["past_key_values"]


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
