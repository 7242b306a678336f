"""Rows far past the model's context refused from their length alone, before anything tokenizes them.

Tokenizing a 50 MB single-line row took 42 s and 4.3 GB before it was refused as longer than the
context (with the tests' tokenizer; 0.7 s and 0.37 GB with this bound). No token stands for more characters than its vocabulary string has (a byte-level BPE
string has one character per byte, and a text has at least as many bytes as characters), so a
rendered row of C characters has at least C / longest tokens; normalizing to NFC or NFKC merges at
most four characters into one. The bound holds only where no character can vanish on the way to
tokens: a normalizer or pre-tokenizer that strips, collapses or removes characters (BERT's, T5's),
or a model that fuses unknown characters into one token, gets no bound, and its rows are counted.
A byte-level vocabulary may lack a few bytes, whose characters are then dropped (SmolLM2's lacks
six ASCII control characters): those characters are not counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterator

from .formats import Example
from .problems import Problem
from .render import ChatRenderer

_KEEP = {"normalizer": {"Prepend": 1, "Lowercase": 1, "NFD": 1, "NFKD": 1, "NFC": 4, "NFKC": 4},
         "pre_tokenizer": {"ByteLevel": 1, "Metaspace": 1, "Digits": 1, "UnicodeScripts": 1, "Split": 1,
                           "Punctuation": 1}}
"""Steps that never drop a character, by kind, with how many characters they may merge into one."""
_NEVER_IN_UTF8 = frozenset((0xC0, 0xC1, *range(0xF5, 0x100)))
"""Bytes no UTF-8 text holds: vocabularies may lack them."""
_CONTINUATION = range(0x80, 0xC0)


@dataclass(frozen=True)
class TokenBound:
    """What a text's token count is at least, from its length."""

    per_token: int
    """At most how many characters one token stands for."""
    dropped: str = ""
    """Characters the tokenizer drops (a byte its vocabulary lacks): they stand for no token."""

    def at_least(self, text: str) -> int:
        return math.ceil((len(text) - sum(map(text.count, self.dropped))) / self.per_token)


def refuse_huge(examples: list[Example], renderer: ChatRenderer, max_length: int,
                context_length: int | None) -> tuple[list[Example], list[Problem]]:
    """The examples that may fit, and a problem for each that cannot, as check_lengths words them but with
    the bound ("at least N tokens"). Only rows longer than the bound's limit in characters are rendered."""
    bound = token_bound(renderer.tokenizer)
    if bound is None:
        return examples, []
    limit = min(context_length or max_length, max_length)
    kept, problems = [], []
    for ex in examples:
        problem = None
        if sum(len(m["content"]) for m in ex.messages) > limit * bound.per_token:
            problem = _refusal(ex, renderer, bound, max_length, context_length)
        if problem is None:
            kept.append(ex)
        else:
            problems.append(problem)
    return kept, problems


def _refusal(ex: Example, renderer: ChatRenderer, bound: TokenBound, max_length: int,
             context_length: int | None) -> Problem | None:
    try:
        rendered = renderer.render_slow(ex)
    except Exception:  # jinja raises whatever the template's author chose; counting reports it
        return None
    full, prompt = bound.at_least(rendered.full), bound.at_least(rendered.prompt)
    if context_length and full > context_length:
        return Problem("error", "over_context", (ex.row,),
                       f"at least {full:,} tokens ({len(rendered.full):,} characters), more than the model's "
                       f"context of {context_length}", "shorten or split this conversation")
    if prompt >= max_length:
        return Problem("error", "no_loss_tokens", (ex.row,),
                       f"the prompt alone is at least {prompt:,} tokens ({len(rendered.prompt):,} characters), so "
                       f"with max length {max_length} the answer is cut away and this row would train on nothing",
                       "shorten the prompt")
    return None


def token_bound(tokenizer: Any) -> TokenBound | None:
    """The bound for this tokenizer; None where characters may vanish uncounted on the way to tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    merged = 1
    for kind in ("normalizer", "pre_tokenizer"):
        step = getattr(backend, kind)
        for leaf in _steps(json.loads(step.__getstate__()) if step is not None else {}):
            factor = _merges(leaf, _KEEP[kind])
            if factor is None:
                return None
            merged *= factor
    vocab = tokenizer.get_vocab()
    missing = _missing_bytes(backend, vocab)
    if missing is None or any(b in _CONTINUATION for b in missing):
        return None  # a character of several bytes could vanish whole
    return TokenBound(merged * max(map(len, vocab)), "".join(chr(b) for b in sorted(missing) if b < 0x80))


def _steps(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The single steps of a normalizer's or pre-tokenizer's JSON (a Sequence's, in order)."""
    if node.get("type") == "Sequence":
        for inner in node.get("normalizers") or node.get("pretokenizers") or []:
            yield from _steps(inner)
    elif node:
        yield node


def _merges(step: dict[str, Any], keep: dict[str, int]) -> int | None:
    """How many characters ``step`` may merge into one; None if it may drop some."""
    if step.get("type") == "Replace":  # a plain string replaced by one at least as long keeps every character
        pattern = step.get("pattern", {}).get("String")
        return 1 if pattern is not None and len(step.get("content", "")) >= len(pattern) else None
    if step.get("behavior") == "Removed":
        return None
    return keep.get(step.get("type"))


def _missing_bytes(backend: Any, vocab: dict[str, int]) -> set[int] | None:
    """The bytes of UTF-8 text that have no token, whose characters byte-level BPE drops; None where a
    character outside the vocabulary may become one unknown token however many characters it stands for."""
    if getattr(backend.model, "byte_fallback", False):
        missing = {b for b in range(256) if f"<0x{b:02X}>" not in vocab and b not in _NEVER_IN_UTF8}
        return None if missing else missing
    if type(backend.model).__name__ != "BPE" or backend.pre_tokenizer is None or not any(
            step.get("type") == "ByteLevel" for step in _steps(json.loads(backend.pre_tokenizer.__getstate__()))):
        return None
    return {b for b, char in _byte_level_chars().items() if char not in vocab and b not in _NEVER_IN_UTF8}


def _byte_level_chars() -> dict[int, str]:
    """GPT-2's table of byte to character, in which byte-level BPE spells its vocabulary."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}
