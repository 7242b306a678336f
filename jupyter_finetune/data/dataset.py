"""The checked, split, versioned data set that training and evaluation take."""

from __future__ import annotations

import gc
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator

from ..errors import InvalidValue
from . import checks, pair_checks
from .estimate import CostEstimate, estimate
from .formats import FORMATS, Example, detect_format, normalise, unknown_format_problem
from .length import MOST_VALIDATION_ROWS, VALIDATION, choose_length
from .length_bound import refuse_huge
from .problems import DataError, Problem, errors
from .readers import RawRow
from .render import ChatRenderer
from .split import split_indices
from .tokens import Lengths, TokenStats, check_lengths, count_tokens
from ..runs import DataManifest, DataRow

DEFAULT_MAX_LENGTH = 1024
MAX_WARNINGS_SHOWN = 200
"""A data set's report lists at most this many warnings (each may name many rows)."""


@dataclass(frozen=True)
class TokenView:
    """One token of a rendered example, as the trainer treats it."""

    text: str
    carries_loss: bool
    cut: bool


@dataclass(frozen=True)
class ValidationSplit:
    """The training rows a run trains on and the slice it scores generations on, carved from them."""

    train: list[Example]
    validation: list[Example]
    train_lengths: Lengths
    train_tokens: int
    """Tokens per pass over ``train`` (cut at max length), what the training length rule weighs."""


@dataclass(frozen=True)
class FtDataset:
    """Examples that passed every check, the warnings kept about them, and their token counts."""

    name: str
    format: str
    train: list[Example]
    test: list[Example]
    train_lengths: Lengths
    test_lengths: Lengths
    warnings: list[Problem]
    seed: int
    split: str
    max_length: int
    model: str
    renderer: ChatRenderer = field(repr=False, compare=False)
    parameters: int | None = None

    @cached_property
    def version(self) -> str:
        """Content hash of the normalised examples and their split: the data's version."""
        return hashlib.blake2b(self.jsonl().encode(), digest_size=6).hexdigest()

    @cached_property
    def stats(self) -> TokenStats:
        return TokenStats.of(self.train_lengths, self.max_length)

    @cached_property
    def test_stats(self) -> TokenStats:
        return TokenStats.of(self.test_lengths, self.max_length)

    @cached_property
    def cost(self) -> CostEstimate:
        """At the length %ft_train would choose: the rule on the rows left after the validation slice. Of
        preference pairs, the tokens of both sequences of each pair, as DPO processes them."""
        split = self.validation_split(VALIDATION, MOST_VALIDATION_ROWS)
        length = choose_length(len(split.train), split.train_tokens, 1, 1)
        return estimate(split.train_tokens, self.parameters, length.epochs,
                        method="dpo" if self.is_preference else "lora")  # what %ft_train trains pairs with

    def jsonl(self) -> str:
        """OpenAI chat JSONL, train rows then test rows, each tagged with its split and source row."""
        lines = [json.dumps({"messages": ex.messages, **({"rejected": ex.rejected} if ex.rejected is not None else {}),
                             "split": split, "row": ex.row}, ensure_ascii=False)
                 for split, rows in (("train", self.train), ("test", self.test)) for ex in rows]
        return "\n".join(lines) + "\n"

    def manifest(self) -> DataManifest:
        """What a run keeps about the data it trained on, beside its copy of the rows (``jsonl``)."""
        return DataManifest(self.name, self.version, self.format, self.split, self.seed, self.model, self.max_length,
                            len(self.train), len(self.test), self.stats.total, self.stats.mean, self.stats.max,
                            tuple(str(p) for p in self.warnings))

    def example(self, index: int = 0, split: str = "train") -> Example:
        rows = self.train if split == "train" else self.test
        return rows[index]

    def preview(self, index: int = 0, split: str = "train", side: str = "chosen") -> list[TokenView]:
        """The example as the trainer sees it: which tokens carry loss, which are cut by max length. Of a
        preference pair, the sequence of one ``side``: the prompt with the chosen or the rejected answer."""
        if side not in ("chosen", "rejected"):
            raise InvalidValue(f"side must be chosen or rejected, not {side!r}")
        example = self.example(index, split)
        if side == "rejected":
            if example.rejected is None:
                raise InvalidValue(f"{self.name!r} is {self.format} data: its examples have no rejected answer")
            example = pair_checks.rejected_side(example)
        rendered = self.renderer.render(example)
        tokenizer = self.renderer.tokenizer
        prompt_len = len(tokenizer(rendered.prompt, add_special_tokens=False)["input_ids"])
        enc = tokenizer(rendered.full, add_special_tokens=False, return_offsets_mapping=True)
        return [TokenView(rendered.full[a:b], i >= prompt_len, i >= self.max_length)
                for i, (a, b) in enumerate(enc["offset_mapping"])]

    def validation_split(self, fraction: float, most: int) -> ValidationSplit:
        """``fraction`` of the training rows (at most ``most``) set aside for validation during training.

        Carved from the training split only, so that the test split stays unseen until the final
        evaluation; seeded by the data's seed and keeping near-duplicates on one side like the test
        split, so a resumed run validates on the same rows. No slice when it would be under 2 rows,
        or when it would leave fewer than 8 to train on.
        """
        want = min(most, round(len(self.train) * fraction))
        if want < 2 or len(self.train) - want < 8 or self.format == "text":
            return ValidationSplit(self.train, [], self.train_lengths, self.stats.total)
        kept, held = split_indices([checks.near_key(ex) for ex in self.train], want / len(self.train), self.seed)
        lengths = self.train_lengths.pick(kept)
        return ValidationSplit([self.train[i] for i in kept], [self.train[i] for i in held], lengths,
                               TokenStats.of(lengths, self.max_length).total)

    def to_hf(self, split: str | list[Example] = "train") -> Any:
        """A datasets.Dataset in TRL's conversational prompt/completion form (loss on the answer), of a
        split by name or of the rows given."""
        from datasets import Dataset

        rows = split if isinstance(split, list) else self.train if split == "train" else self.test
        if self.format == "text":
            return Dataset.from_dict({"text": [ex.messages[0]["content"] for ex in rows]})
        return Dataset.from_dict({"prompt": [ex.messages[:-1] for ex in rows],
                                  "completion": [ex.messages[-1:] for ex in rows]})

    def to_hf_pairs(self, split: str | list[Example] = "train") -> Any:
        """A datasets.Dataset in TRL's conversational preference form (prompt, chosen, rejected), of a
        preference data set's split by name or of the rows given."""
        from datasets import Dataset

        rows = split if isinstance(split, list) else self.train if split == "train" else self.test
        return Dataset.from_dict({"prompt": [ex.messages[:-1] for ex in rows],
                                  "chosen": [ex.messages[-1:] for ex in rows],
                                  "rejected": [[{"role": "assistant", "content": ex.rejected}] for ex in rows]})

    @property
    def is_preference(self) -> bool:
        return self.format == "preference"

    def __repr__(self) -> str:
        """The data report as text (a notebook shows ui's HTML form): counts, tokens, cost, every warning.
        Preference data counts pairs, each pair's tokens being both of its sequences, as DPO runs them."""
        s, c = self.stats, self.cost
        unit, each = ("pairs", "pair") if self.is_preference else ("rows", "example")
        both = " (prompt+chosen and prompt+rejected)" if self.is_preference else ""
        lines = [
            f"<FtDataset {self.name!r} v{self.version}: {len(self.train)} train / {len(self.test)} test {unit} "
            f"({self.format}), {s.mean:.0f} tokens/{each} (max {s.max}), {len(self.warnings)} warning(s)>",
            f"tokens/{each}{both}: min {s.min} mean {s.mean:.0f} p95 {s.p95} max {s.max}; {s.total:,} train tokens "
            "per epoch",
            f"local training: ~{rough_duration(c.local_seconds)} for {c.epochs} epochs on {c.local_device}",
            f"OpenAI fine-tuning (as of {c.prices_as_of}): "
            + ", ".join(f"{m} ${usd:,.2f}" for m, usd in c.openai_usd.items()),
        ]
        return "\n".join(lines + [f"warning: {p}" for p in self.warnings[:MAX_WARNINGS_SHOWN]])


def rough_duration(seconds: float | None) -> str:
    """``40 s``, ``12 min``, ``2.5 h``: as precise as a rough estimate deserves."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def prepare(rows: list[RawRow], *, name: str, tokenizer: Any, model: str, fmt: str = "auto",
            split: float | list[RawRow] = 0.1, seed: int = 0, max_length: int = DEFAULT_MAX_LENGTH,
            context_length: int | None = None, parameters: int | None = None) -> FtDataset:
    """Read, normalise, check, count and split; raise DataError listing every error at once."""
    if fmt != "auto" and fmt not in FORMATS:
        raise InvalidValue(f"unknown format {fmt!r}: use auto or one of {', '.join(FORMATS)}")
    renderer = ChatRenderer(tokenizer)
    with _gc_paused():
        fmt = detect_format(rows) if fmt == "auto" else fmt
        if fmt is None:
            raise DataError([unknown_format_problem(rows)], name)
        train, train_lengths, train_keys, problems = _check_rows(rows, fmt, renderer, max_length, context_length)
        if isinstance(split, list):
            test, test_lengths, test_keys, test_problems = _check_rows(split, fmt, renderer, max_length, context_length)
            problems += [_as_test(p) for p in test_problems]
            problems += checks.check_leakage(train, train_keys, test, test_keys)
            split_label = "test file"
        else:
            train_idx, test_idx = split_indices(train_keys, split, seed)
            test = [train[i] for i in test_idx]
            test_lengths = train_lengths.pick(test_idx)
            train = [train[i] for i in train_idx]
            train_lengths = train_lengths.pick(train_idx)
            split_label = f"{split:g}"
        problems += checks.check_count(len(train), "pairs" if fmt == "preference" else "examples")
    if renderer.uses_fallback:
        problems.append(Problem("warning", "no_chat_template", (), "the model has no chat template; ChatML is used",
                                "use an instruct/chat model, or keep ChatML consistently for training and serving"))
    if errors(problems):
        raise DataError(problems, name)
    return FtDataset(name, fmt, train, test, train_lengths, test_lengths, problems, seed, split_label,
                     max_length, model, renderer, parameters)


def restore(manifest: DataManifest, rows: list[DataRow], tokenizer: Any, parameters: int | None = None) -> FtDataset:
    """A run's copy of its data set (already checked when it was made), with the same version."""
    split: dict[str, list[Example]] = {"train": [], "test": []}
    for row in rows:
        split[row.split].append(Example(row.row, row.messages, manifest.format == "text", row.rejected))
    renderer = ChatRenderer(tokenizer)
    train_lengths, test_lengths = (_counted(split[s], renderer, manifest.format, manifest.max_length)
                                   for s in ("train", "test"))
    return FtDataset(manifest.name, manifest.format, split["train"], split["test"], train_lengths, test_lengths, [],
                     manifest.seed, manifest.split, manifest.max_length, manifest.model, renderer, parameters)


def _check_rows(rows: list[RawRow], fmt: str, renderer: ChatRenderer, max_length: int,
                context_length: int | None) -> tuple[list[Example], Lengths, list[str], list[Problem]]:
    examples, problems = normalise(rows, fmt)
    examples, turn_problems = checks.check_turns(examples)
    examples, huge_problems = refuse_huge(examples, renderer, max_length, context_length)
    examples, lengths, template_problems = count_tokens(examples, renderer)
    problems += turn_problems + huge_problems + template_problems
    if fmt == "preference":
        examples, lengths, side_problems = pair_checks.count_rejected(examples, lengths, renderer, max_length,
                                                                      context_length)
        problems += side_problems + pair_checks.check_cut_alike(examples, lengths, renderer, max_length,
                                                                context_length)
        problems += pair_checks.check_length_bias(examples, lengths)
    keys = [checks.near_key(ex) for ex in examples]
    problems += check_lengths(examples, lengths, max_length, context_length)
    problems += checks.check_duplicates(examples, keys)
    return examples, lengths, keys, problems


def _counted(examples: list[Example], renderer: ChatRenderer, fmt: str, max_length: int) -> Lengths:
    """Token counts of examples already checked: both sides of preference pairs."""
    _, lengths, _ = count_tokens(examples, renderer)
    if fmt == "preference":
        _, lengths, _ = pair_checks.count_rejected(examples, lengths, renderer, max_length, None)
    return lengths


def _as_test(problem: Problem) -> Problem:
    return Problem(problem.severity, problem.code, problem.rows, f"test file: {problem.message}",
                   problem.fix, problem.field)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building a million small objects triggers full collections that find nothing to free."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

