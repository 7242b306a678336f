"""Fine-tuned vs prompting, RAG and both (evaluation/systems.py): the same rows and decoding for all.

Generating is the slow part and is kept (``Outputs``, saved under the run) apart from scoring,
so a new metric or threshold re-scores saved answers without generating again.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from ..errors import InvalidValue
from ..data import FtDataset
from ..data.documents import Documents
from ..data.formats import Example
from ..runs import SystemResult
from .generate import Generation, GenerationOutOfMemory, generate_timed
from .loading import START_ADAPTER, LoadedRun, switched_to
from .metrics import Metric, score
from .systems import ADAPTED, build_prompts, check_systems, in_order


@dataclass(frozen=True)
class Outputs:
    """What each system answered on the held-out rows, and under which settings."""

    settings: dict[str, Any]
    rows: list[int]
    prompts: list[list[dict[str, str]]]
    references: list[str]
    shot_rows: list[int]
    generations: dict[str, Generation] = field(default_factory=dict)
    """Each system's answers; one with fewer answers than rows was stopped (out of memory) and resumes."""
    loaded: dict[str, str] | None = None
    """How the model that generated them was loaded (``LoadDescription.to_dict``); None before any load."""
    neighbours: list[list[int]] = field(default_factory=list)
    """Per row, the training rows the retrieval system showed as examples (empty without it)."""
    citations: list[list[str]] = field(default_factory=list)
    """Per row, the ids of the passages the RAG systems were given (empty without them)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Outputs":
        return cls(**{**d, "generations": {k: Generation(**g) for k, g in d["generations"].items()}})


@dataclass(frozen=True)
class SystemScores:
    """One system's per-row scores and its costs."""

    system: str
    per_row: dict[str, list[float]]
    prompt_tokens: float
    latency_s: float
    tokens_per_s: float
    answer_tokens: float = 0.0

    def usd_per_1k(self, usd_per_million_tokens: float) -> float:
        """What 1,000 requests cost where every token (prompt and answer) is billed at one price."""
        return (self.prompt_tokens + self.answer_tokens) * usd_per_million_tokens / 1000

    def mean(self, metric: str) -> float:
        values = self.per_row[metric]
        return sum(values) / len(values)


@dataclass(frozen=True)
class Comparison:
    outputs: Outputs
    metrics: tuple[str, ...]
    systems: dict[str, SystemScores]
    usd_per_million_tokens: float | None = None
    """The serving price per token the cost column uses (None: no cost column)."""

    @property
    def rows(self) -> int:
        return len(self.outputs.rows)

    def table(self) -> list[dict[str, Any]]:
        """One dict per system: its mean per metric, prompt tokens per request, latency, tokens/s and the
        cost of 1,000 requests."""
        price = self.usd_per_million_tokens
        return [{"system": name, **{m: s.mean(m) for m in self.metrics}, "prompt tokens": s.prompt_tokens,
                 "s/request": s.latency_s, "tokens/s": s.tokens_per_s,
                 **({"$/1k requests": s.usd_per_1k(price)} if price is not None else {})}
                for name, s in self.systems.items()]

    def table_text(self) -> str:
        table = self.table()
        columns = [c for c in table[0] if c != "system"]
        width = max(len("system"), *(len(r["system"]) for r in table))
        lines = [f"{'system':<{width}}  " + "  ".join(f"{c:>13}" for c in columns)]
        for r in table:
            lines.append(f"{r['system']:<{width}}  " + "  ".join(f"{format_value(c, r[c]):>13}" for c in columns))
        return "\n".join(lines) + f"\n({self.rows} held-out rows)"

    def summary(self) -> dict[str, SystemResult]:
        """Mean scores and costs per system, as kept with the run (the runs table reads these)."""
        return {name: SystemResult({m: s.mean(m) for m in self.metrics}, s.prompt_tokens, s.latency_s,
                                   s.tokens_per_s) for name, s in self.systems.items()}


def format_value(column: str, value: float) -> str:
    """How a table cell shows a value: counts whole, rates and scores to a sensible precision."""
    if column == "prompt tokens":
        return f"{value:.0f}"
    if column == "tokens/s":
        return f"{value:.1f}"
    if column == "$/1k requests":
        return f"{value:.4f}" if value < 1 else f"{value:,.2f}"
    return f"{value:.3f}" if column == "s/request" else f"{value:.2f}"


def held_out(data: FtDataset, split: str, limit: int | None) -> list[Example]:
    """The rows to evaluate on: the ``split`` ("test", or "train" for a sanity check), first ``limit``."""
    if split not in ("test", "train"):
        raise InvalidValue(f"split {split!r}: evaluate on test (the held-out rows) or train")
    rows = data.test if split == "test" else data.train
    if data.format == "text":
        raise InvalidValue(f"{data.name!r} is plain text: there is no answer to compare; evaluate a chat or "
                           "prompt/completion data set")
    if not rows:
        raise InvalidValue(f"{data.name!r} has no {split} rows: make it with --split 0.1 or a test file")
    return rows[:limit] if limit else rows


def metric_rows(rows: list[Example]) -> list[dict[str, Any]]:
    """What a user metric gets as its ``row`` argument for each example."""
    return [{"row": ex.row, "messages": ex.messages} for ex in rows]


def answer_budget(tokenizer: Any, rows: list[Example]) -> int:
    """New tokens to allow: the longest reference answer plus a margin, so a longer answer shows as wrong."""
    longest = max(len(tokenizer(ex.messages[-1]["content"], add_special_tokens=False)["input_ids"]) for ex in rows)
    return min(1024, longest + 16)


def generate_outputs(load: Callable[[], LoadedRun], rows: list[Example], train: list[Example],
                     settings: dict[str, Any], *, systems: tuple[str, ...], docs: Documents | None = None,
                     batch_size: int | None = None, reuse: Outputs | None = None,
                     keep: Callable[[Outputs], None] | None = None, start: str | None = None) -> Outputs:
    """Answers of each system on ``rows``; systems already in ``reuse`` are not generated again, and one
    stopped part way is continued from its first missing row.

    ``settings`` (shots, passages, seed, max_new_tokens, the documents' version and what chose the rows)
    are kept with the answers; ``load`` gives the run's model and is called only when something must be
    generated. ``keep`` is handed the answers so far after each system, and before an out-of-memory error
    is raised, so that no answer is generated twice. ``start`` names the system (``systems.started_from``)
    that answers with the adapter the run started from, which ``load`` then loads as well.
    """
    check_systems([s for s in systems if s != start], docs)
    prompts = build_prompts(rows, train, systems, shots=settings["shots"], seed=settings["seed"], docs=docs,
                            passages=settings.get("passages", 0))
    outputs = Outputs(dict(settings), [ex.row for ex in rows], prompts.plain, [ex.messages[-1]["content"] for ex in rows],
                      prompts.shot_rows,
                      {k: v for k, v in reuse.generations.items() if k in systems} if reuse else {},
                      reuse.loaded if reuse else None, prompts.neighbours, prompts.citations)
    todo = [s for s in systems if s not in outputs.generations or len(outputs.generations[s].answers) < len(rows)]
    if not todo:
        return outputs
    loaded = load()
    outputs = replace(outputs, loaded=loaded.description.to_dict())
    for system in todo:
        asked = prompts.asked(system)
        done = outputs.generations.get(system, Generation([], [], [], 0.0))
        adapter = (switched_to(loaded.model, START_ADAPTER) if system == start else
                   contextlib.nullcontext() if system in ADAPTED else loaded.model.disable_adapter())
        try:
            with adapter:
                more = generate_timed(loaded.model, loaded.tokenizer, asked[len(done.answers):],
                                      max_new_tokens=settings["max_new_tokens"], batch_size=batch_size)
        except GenerationOutOfMemory as e:
            outputs.generations[system] = done.then(e.done)
            if keep:
                keep(outputs)
            raise
        outputs.generations[system] = done.then(more)
        if keep:
            keep(outputs)
    return outputs


def score_outputs(outputs: Outputs, metrics: dict[str, Metric], rows: list[dict[str, Any]],
                  usd_per_million_tokens: float | None = None) -> Comparison:
    """Per-row scores of every system; ``rows`` are the held-out examples handed to user metrics."""
    systems = {}
    for name in in_order(list(outputs.generations)):
        gen = outputs.generations[name]
        per_row = {m: [score(m, fn, a, r, row) for a, r, row in zip(gen.answers, outputs.references, rows)]
                   for m, fn in metrics.items()}
        n = len(gen.answers)
        systems[name] = SystemScores(name, per_row, sum(gen.prompt_tokens) / n, gen.seconds / n, gen.tokens_per_s,
                                     sum(gen.new_tokens) / n)
    return Comparison(outputs, tuple(metrics), systems, usd_per_million_tokens)
