"""Rough cost and time before training: what OpenAI would charge, how long it takes here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

# Measured (examples/quickstart.ipynb, torch 2.13 CPU, TRL 1.16): LoRA r16 on SmolLM2-135M trains
# ~80 non-padding tokens/s on 2 cores. Training costs about 6 FLOPs per parameter per token, so one
# core delivers about 80 * 6 * 135e6 / 2 FLOP/s.
CPU_FLOPS_PER_CORE = 80 * 6 * 135e6 / 2


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    source: str
    note: str
    default_epochs: int
    usd_per_million: dict[str, float]


@dataclass(frozen=True)
class CostEstimate:
    """Training-token cost on OpenAI's price table, and local CPU time, for a number of epochs."""

    tokens_per_epoch: int
    epochs: int
    openai_usd: dict[str, float]
    prices_as_of: str
    local_seconds: float | None
    local_device: str

    @property
    def billed_tokens(self) -> int:
        return self.tokens_per_epoch * self.epochs


@lru_cache(maxsize=1)
def price_table() -> PriceTable:
    raw = json.loads(files(__package__).joinpath("prices.json").read_text())
    return PriceTable(raw["as_of"], raw["source"], raw["note"], raw["default_epochs"],
                      raw["openai_training_usd_per_million_tokens"])


def estimate(tokens_per_epoch: int, parameters: int | None, epochs: int | None = None) -> CostEstimate:
    table = price_table()
    epochs = epochs or table.default_epochs
    billed = tokens_per_epoch * epochs
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    seconds = billed * 6 * parameters / (CPU_FLOPS_PER_CORE * cores) if parameters else None
    return CostEstimate(
        tokens_per_epoch=tokens_per_epoch, epochs=epochs,
        openai_usd={m: billed * p / 1e6 for m, p in table.usd_per_million.items()},
        prices_as_of=table.as_of, local_seconds=seconds, local_device=f"CPU, {cores} cores",
    )
