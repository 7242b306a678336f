"""What a preference pair costs and teaches once tokenized: the rejected side's length, pairs that the
maximum length cuts to the same tokens, and a chosen side that is systematically the longer one.

DPO runs two sequences per pair, the prompt with the chosen answer and the prompt with the rejected
one, each cut at ``max_length`` (TRL keeps their start). The chosen side is counted with every
example (``tokens.count_tokens``); the rejected side is counted here the same way.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from .formats import Example
from .length_bound import refuse_huge
from .problems import Problem
from .render import ChatRenderer
from .tokens import Lengths, count_tokens

MIN_PAIRS_FOR_BIAS = 10
"""Fewer pairs than this say nothing systematic about length."""
LONGER_SHARE = 0.7
"""Chosen longer than rejected in at least this share of the pairs..."""
LONGER_RATIO = 1.2
"""...and the chosen answers' mean length at least this many times the rejected answers': a length bias."""


def rejected_side(example: Example) -> Example:
    """The pair's second sequence: the same prompt, ending with the rejected answer."""
    return Example(example.row, example.messages[:-1] + [{"role": "assistant", "content": example.rejected or ""}])


def count_rejected(examples: list[Example], lengths: Lengths, renderer: ChatRenderer, max_length: int,
                   context_length: int | None) -> tuple[list[Example], Lengths, list[Problem]]:
    """The pairs whose rejected side could be counted, with its lengths added; a problem (field
    ``rejected``) for each whose rejected side is far past the context or that the template rejects."""
    sides, huge = refuse_huge([rejected_side(ex) for ex in examples], renderer, max_length, context_length)
    sides, counted, template = count_tokens(sides, renderer)
    rejected = dict(zip((ex.row for ex in sides), counted.full))
    keep = [i for i, ex in enumerate(examples) if ex.row in rejected]
    picked = lengths.pick(keep)
    problems = [replace(p, field="rejected", message=f"with the rejected answer: {p.message}") for p in huge + template]
    return ([examples[i] for i in keep], Lengths(picked.full, picked.prompt, [rejected[examples[i].row] for i in keep]),
            problems)


def check_cut_alike(examples: list[Example], lengths: Lengths, renderer: ChatRenderer, max_length: int,
                    context_length: int | None) -> list[Problem]:
    """Pairs whose two sequences are the same tokens once cut at ``max_length``.

    An error, as ``check_lengths`` makes a row whose answer is cut away entirely an error: such a
    pair trains on nothing. The policy's and the reference's log-probabilities of the two sides
    are then equal, so every DPO loss (a function of the difference between the sides) is
    constant and its gradient zero; the pair only dilutes the batch and misleads the reward
    accuracy. Only pairs whose sides both reach ``max_length`` can be alike, so only those are
    tokenized.
    """
    assert lengths.rejected is not None
    candidates = [i for i, (c, r) in enumerate(zip(lengths.full, lengths.rejected)) if min(c, r) >= max_length]
    if not candidates:
        return []
    tokenizer = renderer.tokenizer
    texts = [renderer.render(side).full for i in candidates for side in (examples[i], rejected_side(examples[i]))]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows, apart = [], 0
    for n, i in enumerate(candidates):
        chosen, rejected = ids[2 * n], ids[2 * n + 1]
        if chosen[:max_length] == rejected[:max_length]:
            rows.append(examples[i].row)
            apart = max(apart, next((k for k, (a, b) in enumerate(zip(chosen, rejected)) if a != b),
                                    min(len(chosen), len(rejected))) + 1)
    if not rows:
        return []
    fix = f"raise --max-length to {apart} or more (where the two answers first differ)"
    if context_length and apart > context_length:
        fix = f"the answers first differ after the model's context of {context_length} tokens"
    return [Problem("error", "cut_alike", tuple(rows),
                    f"cut at max length {max_length}, the chosen and the rejected sequence are the same tokens, so "
                    "the pair teaches nothing (the answers differ only past the cut)",
                    f"{fix}; or shorten the prompt, or the beginning the two answers share")]


def check_length_bias(examples: list[Example], lengths: Lengths) -> list[Problem]:
    """A warning when the chosen answer is systematically the longer one: DPO then learns, and amplifies,
    length as the preference. Answer lengths are the tokens that carry loss on each side."""
    chosen, rejected = lengths.answer, lengths.rejected_answer
    if len(examples) < MIN_PAIRS_FOR_BIAS:
        return []
    longer = sum(c > r for c, r in zip(chosen, rejected))
    share = longer / len(chosen)
    chosen_mean, rejected_mean = statistics.fmean(chosen), statistics.fmean(rejected)
    ratio = chosen_mean / max(rejected_mean, 1e-9)
    if share < LONGER_SHARE or ratio < LONGER_RATIO:
        return []
    return [Problem("warning", "length_bias", (),
                    f"the chosen answer is the longer one in {share:.0%} of the pairs ({longer} of {len(chosen)}) and "
                    f"{ratio:.1f}x as long on average ({chosen_mean:.0f} vs {rejected_mean:.0f} tokens): DPO learns "
                    "and amplifies length as the preference", "add pairs where the shorter answer wins; after "
                    "training, check that the gain is not only length (%ft_eval's length comparison)",
                    field="chosen")]
