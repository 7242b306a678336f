"""Rough cost and time before training: what OpenAI would charge, how long it takes here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from ..models.speed import Compute, flops_per_token, local_compute


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    source: str
    note: str
    default_epochs: int
    usd_per_million: dict[str, float]


@dataclass(frozen=True)
class ServingPrice:
    """What a hosted provider charges per token to serve a model of some size (prompt and answer alike)."""

    usd_per_million: float
    as_of: str
    basis: str


@dataclass(frozen=True)
class CostEstimate:
    """Training-token cost on OpenAI's price table, and local training time, for a number of epochs."""

    tokens_per_epoch: int
    epochs: int
    openai_usd: dict[str, float]
    prices_as_of: str
    local_seconds: float | None
    local_device: str


@lru_cache(maxsize=1)
def _prices() -> dict[str, Any]:
    """The dated price table shipped with the package (prices.json), read once."""
    return json.loads(files(__package__).joinpath("prices.json").read_text())


@lru_cache(maxsize=1)
def price_table() -> PriceTable:
    raw = _prices()
    return PriceTable(raw["as_of"], raw["source"], raw["note"], raw["default_epochs"],
                      raw["openai_training_usd_per_million_tokens"])


def serving_price(parameters: int | None) -> ServingPrice:
    """The dated serving price for a model of ``parameters`` (the largest tier when unknown)."""
    raw = _prices()["serving"]
    tiers = raw["usd_per_million_tokens"]
    for tier in tiers:
        limit = tier["up_to_billion_parameters"]
        if parameters is not None and (limit is None or parameters <= limit * 1e9):
            size = f"models up to {limit}B parameters" if limit else "the largest models"
            return ServingPrice(tier["usd"], raw["as_of"], f"{raw['source']}, {size}")
    return ServingPrice(tiers[-1]["usd"], raw["as_of"], f"{raw['source']}, the largest models (size unknown)")


def openai_usd(tokens_per_epoch: int, epochs: float) -> dict[str, float]:
    """OpenAI bills training tokens x epochs, per model."""
    return {m: tokens_per_epoch * epochs * p / 1e6 for m, p in price_table().usd_per_million.items()}


def estimate(tokens_per_epoch: int, parameters: int | None, epochs: int | None = None,
             compute: Compute | None = None, method: str = "lora") -> CostEstimate:
    """LoRA (or ``method``: dpo on pairs) without checkpointing (%ft_train's defaults) on ``compute``, by default
    where this kernel trains."""
    table = price_table()
    epochs = epochs or table.default_epochs
    compute = compute or local_compute()
    trained = tokens_per_epoch * epochs
    seconds = compute.seconds(trained, flops_per_token(parameters, method)) if compute and parameters else None
    return CostEstimate(
        tokens_per_epoch=tokens_per_epoch, epochs=epochs, openai_usd=openai_usd(tokens_per_epoch, epochs),
        prices_as_of=table.as_of, local_seconds=seconds,
        local_device=compute.name if compute else "a GPU not in the table",
    )
