"""Token counts per example, as the trainer will see them, and the length checks built on them.

Counting is the costly part of checking a data set. Chat templates put special tokens around
every content, and fast tokenizers split at special tokens before anything else, so a row's
count is the sum of its contents' counts and its shape's literal pieces' counts. Each distinct
content (a shared system prompt, say) is tokenized once, in one batch. The sum is compared
with a real rendering and tokenization on the first row of every shape and on every
``SAMPLE_EVERY``-th row; a shape that disagrees once is counted the ordinary way.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .formats import Example
from .problems import Problem
from .render import ChatRenderer, Rendered

SAMPLE_EVERY = 256


@dataclass(frozen=True)
class Lengths:
    """Tokens per example: the whole text and the prompt part that carries no loss; for preference pairs
    (where ``full`` is the prompt and the chosen answer) also the prompt and the rejected answer."""

    full: list[int]
    prompt: list[int]
    rejected: list[int] | None = None
    """Per pair, the prompt plus the rejected answer: the second sequence DPO processes. None outside pairs."""

    @property
    def answer(self) -> list[int]:
        return [f - p for f, p in zip(self.full, self.prompt)]

    @property
    def rejected_answer(self) -> list[int]:
        return [r - p for r, p in zip(self.rejected or [], self.prompt)]

    @property
    def sequences(self) -> list[tuple[int, ...]]:
        """Each example's sequences as the trainer runs them: one, or a pair's two (prompt repeated in each)."""
        if self.rejected is None:
            return [(f,) for f in self.full]
        return list(zip(self.full, self.rejected))

    def pick(self, idx: list[int]) -> "Lengths":
        """The lengths of the examples at ``idx``, in that order."""
        return Lengths([self.full[i] for i in idx], [self.prompt[i] for i in idx],
                       None if self.rejected is None else [self.rejected[i] for i in idx])


@dataclass(frozen=True)
class TokenStats:
    """Tokens per example as training processes them: for a preference pair both of its sequences (prompt
    and chosen answer, prompt and rejected answer), so that the totals, the cost and the time count what DPO
    runs; ``longest`` is the longest single sequence, the one ``max_length`` cuts."""

    examples: int
    min: int
    mean: float
    p95: int
    max: int
    total: int
    answer_mean: float
    truncated: int
    longest: int

    @classmethod
    def of(cls, lengths: Lengths, max_length: int) -> "TokenStats":
        if not lengths.full:
            return cls(0, 0, 0.0, 0, 0, 0, 0.0, 0, 0)
        if lengths.rejected is None:
            sizes, answer, cut = sorted(lengths.full), lengths.answer, lengths.full
            truncated, longest = sum(n > max_length for n in cut), sizes[-1]
        else:
            sizes = sorted(c + r for c, r in zip(lengths.full, lengths.rejected))
            answer = [c + r for c, r in zip(lengths.answer, lengths.rejected_answer)]
            cut = lengths.full + lengths.rejected
            truncated = sum(max(c, r) > max_length for c, r in zip(lengths.full, lengths.rejected))
            longest = max(cut)
        return cls(
            examples=len(sizes), min=sizes[0], mean=statistics.fmean(sizes),
            p95=sizes[min(len(sizes) - 1, int(0.95 * len(sizes)))], max=sizes[-1],
            total=sum(min(n, max_length) for n in cut), answer_mean=statistics.fmean(answer),
            truncated=truncated, longest=longest,
        )


def batch_counter(tokenizer: Any) -> Callable[[Sequence[str]], list[int]]:
    """Token counts for many strings, through the fast tokenizer's batch path where there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        # A private copy: a padded call on the shared tokenizer (batched generation) leaves padding
        # switched on in its backend, which would count padded lengths.
        backend = type(backend).from_str(backend.to_str())
        backend.no_padding()
        backend.no_truncation()

        def count(texts: Sequence[str]) -> list[int]:
            return list(map(len, backend.encode_batch_fast(list(texts), add_special_tokens=False)))
        return count

    def count_slow(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    return count_slow


def count_tokens(examples: list[Example], renderer: ChatRenderer) -> tuple[list[Example], Lengths, list[Problem]]:
    """Lengths of the examples the template accepts; a Problem for each it rejects."""
    count = batch_counter(renderer.tokenizer)
    roles = [renderer.roles(ex) for ex in examples]
    direct = {i for i, ex in enumerate(examples) if renderer.shape(roles[i]) is None or _edge_space(ex)}
    composed = [i for i in range(len(examples)) if i not in direct]
    sample = _sample(composed, roles)
    bad_shapes = {roles[i] for i, ok in zip(sample, _agrees(examples, sample, roles, renderer, count)) if not ok}
    direct |= {i for i in composed if roles[i] in bad_shapes}
    composed = [i for i in composed if roles[i] not in bad_shapes]

    full: dict[int, int] = {}
    prompt: dict[int, int] = {}
    full_c, prompt_c = _composed_counts([examples[i] for i in composed], [roles[i] for i in composed], renderer, count)
    full.update(zip(composed, full_c))
    prompt.update(zip(composed, prompt_c))

    problems: list[Problem] = []
    rendered: dict[int, Rendered] = {}
    for i in sorted(direct):
        try:
            rendered[i] = renderer.render_slow(examples[i])
        except Exception as exc:  # jinja raises whatever the template's author chose
            problems.append(Problem(
                "error", "template_rejects", (examples[i].row,),
                f"the model's chat template rejects this conversation ({exc})",
                "order the turns as the model expects (often: optional system, then user and assistant alternating)"))
    keys = list(rendered)
    full.update(zip(keys, count([rendered[i].full for i in keys])))
    prompt.update(zip(keys, count([rendered[i].prompt for i in keys])))
    kept = sorted(full)
    return [examples[i] for i in kept], Lengths([full[i] for i in kept], [prompt[i] for i in kept]), problems


def _edge_space(example: Example) -> bool:
    """Templates may trim content; such rows are rendered for real rather than pieced together."""
    for m in example.messages:
        c = m["content"]
        if c[:1].isspace() or c[-1:].isspace():
            return True
    return False


def _sample(composed: list[int], roles: list[tuple[str, ...]]) -> list[int]:
    seen: set[tuple[str, ...]] = set()
    sample = []
    for n, i in enumerate(composed):
        if roles[i] not in seen or n % SAMPLE_EVERY == 0:
            seen.add(roles[i])
            sample.append(i)
    return sample


def _agrees(examples: list[Example], sample: list[int], roles: list[tuple[str, ...]],
            renderer: ChatRenderer, count: Callable[[Sequence[str]], list[int]]) -> list[bool]:
    """Whether the shortcut gives the real text and the real counts on each sampled row."""
    picked = [examples[i] for i in sample]
    full_c, prompt_c = _composed_counts(picked, [roles[i] for i in sample], renderer, count)
    real: list[Rendered | None] = []
    for ex in picked:
        try:
            real.append(renderer.render_slow(ex))
        except Exception:  # such rows are reported when counted the ordinary way
            real.append(None)
    texts = [t for r in real if r is not None for t in (r.full, r.prompt)]
    counts = iter(count(texts))
    verdicts = []
    for ex, r, f, p in zip(picked, real, full_c, prompt_c):
        if r is None:
            verdicts.append(False)
            continue
        real_full, real_prompt = next(counts), next(counts)
        verdicts.append(renderer.render(ex) == r and (f, p) == (real_full, real_prompt))
    return verdicts


def _composed_counts(examples: list[Example], roles: list[tuple[str, ...]], renderer: ChatRenderer,
                     count: Callable[[Sequence[str]], list[int]]) -> tuple[list[int], list[int]]:
    index: dict[str, int] = {}
    for ex in examples:
        for m in ex.messages:
            index.setdefault(m["content"], len(index))
    piece_counts: dict[tuple[str, ...], tuple[int, int]] = {}
    for shape_roles in set(roles):
        shape = renderer.shape(shape_roles)
        assert shape is not None
        piece_counts[shape_roles] = (sum(count(list(shape.full))), sum(count(list(shape.prompt))))
    content_counts = count(list(index))
    full_out, prompt_out = [], []
    for ex, r in zip(examples, roles):
        pieces_full, pieces_prompt = piece_counts[r]
        ns = [content_counts[index[m["content"]]] for m in ex.messages]
        answer = ns.pop()
        prompt_out.append(pieces_prompt + sum(ns))
        full_out.append(pieces_full + sum(ns) + answer)
    return full_out, prompt_out


def check_lengths(examples: list[Example], lengths: Lengths, max_length: int,
                  context_length: int | None) -> list[Problem]:
    """Over-long rows, and rows whose answer would be cut away entirely (nothing to learn). A preference
    pair is over-long or truncated when either of its sequences is (the field names the rejected side)."""
    problems: list[Problem] = []
    truncated: list[int] = []
    for ex, sequences, prompt in zip(examples, lengths.sequences, lengths.prompt):
        full = max(sequences)
        if context_length and full > context_length:
            side = "rejected" if sequences.index(full) == 1 else None
            problems.append(Problem("error", "over_context", (ex.row,),
                                    f"{full} tokens{' with the rejected answer' if side else ''}, more than the "
                                    f"model's context of {context_length}", "shorten or split this conversation",
                                    field=side))
        elif prompt >= max_length:
            problems.append(Problem("error", "no_loss_tokens", (ex.row,),
                                    f"the prompt alone is {prompt} tokens, so with max length {max_length} the "
                                    "answer is cut away and this row would train on nothing",
                                    f"shorten the prompt or raise --max-length above {prompt}"))
        elif full > max_length:
            truncated.append(ex.row)
    if truncated:
        problems.append(Problem("warning", "truncated", tuple(truncated),
                                f"longer than max length {max_length}: the end of the answer is cut in training",
                                f"raise --max-length (longest row: {max(map(max, lengths.sequences))} tokens) or "
                                "shorten these rows"))
    return problems
