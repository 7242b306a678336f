"""Base model vs fine-tuned on the same held-out rows, the same prompts and the same decoding."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import FtDataset
from ..models.quiet import library_bars_off
from .generate import generate
from .metrics import METRICS


@dataclass(frozen=True)
class SystemScores:
    """One system's answers on the held-out rows and its mean score per metric."""

    system: str
    answers: list[str]
    scores: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class Comparison:
    rows: int
    metrics: tuple[str, ...]
    systems: list[SystemScores] = field(default_factory=list)

    def table_text(self) -> str:
        width = max(len(s.system) for s in self.systems)
        head = f"{'system':<{width}}  " + "  ".join(f"{m:>11}" for m in self.metrics) + "  seconds"
        lines = [head] + [f"{s.system:<{width}}  " + "  ".join(f"{s.scores[m]:>11.2f}" for m in self.metrics)
                          + f"  {s.seconds:>7.1f}" for s in self.systems]
        return "\n".join(lines) + f"\n({self.rows} held-out rows)"


def compare(model_path: Path, adapter_dir: Path, data: FtDataset, *, metrics: tuple[str, ...] = ("json_valid", "json_fields", "exact"),
            max_new_tokens: int = 64, batch_size: int = 8, limit: int | None = None) -> Comparison:
    """Greedy answers of the base model and of base + adapter, scored on the test split."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}: use {', '.join(METRICS)}")
    rows = data.test[:limit] if limit else data.test
    if not rows:
        raise ValueError(f"{data.name!r} has no test rows: make it with --split 0.1 or a test file")
    with library_bars_off():
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, adapter_dir).eval()
    prompts = [ex.messages[:-1] for ex in rows]
    references = [ex.messages[-1]["content"] for ex in rows]
    result = Comparison(len(rows), tuple(metrics))
    for system in ("base", "fine-tuned"):
        start = time.perf_counter()
        if system == "base":
            with model.disable_adapter():
                answers = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        else:
            answers = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        seconds = time.perf_counter() - start
        scores = {m: sum(METRICS[m](a, r) for a, r in zip(answers, references)) / len(rows) for m in metrics}
        result.systems.append(SystemScores(system, answers, scores, seconds))
    return result
