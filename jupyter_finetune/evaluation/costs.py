"""What a run's training cost, measured, and what its answers cost to serve: the inputs of the break-even.

Training is priced two ways, both from the dated tables shipped with the package: the measured
training time at the hourly price of the hardware it ran on (models/gpus.json), and what a hosted
fine-tuning service would charge for the same training tokens (data/prices.json). Serving is priced
per token at a hosted provider's price for a model of the run's size, the same for a base model and
its LoRA fine-tune, so a shorter prompt is the whole of fine-tuning's saving per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.estimate import ServingPrice, price_table
from ..models.gpus import gpu_table
from ..runs import Run
from ..runs.summary import duration
from .decision import usd


@dataclass(frozen=True)
class TrainingCost:
    seconds: float | None
    """Training time as measured (None when the run's records do not tell)."""
    device: str
    usd: float | None
    """``seconds`` at the device's hourly price (None when either is unknown)."""
    tokens: int
    """Training tokens: tokens per epoch times the epochs trained."""
    hosted_usd: float
    hosted_model: str
    """The cheapest hosted fine-tuning in the price table, which ``hosted_usd`` is priced at."""
    as_of: str

    @property
    def basis_usd(self) -> float:
        """What the break-even counts: the measured cost where known, else the hosted price."""
        return self.usd if self.usd is not None else self.hosted_usd

    def text(self) -> str:
        hosted = (f"hosted fine-tuning of the same {self.tokens:,} training tokens: {usd(self.hosted_usd)} "
                  f"({self.hosted_model}, prices as of {self.as_of})")
        if self.usd is None:
            where = f"{duration(self.seconds)} on {self.device or 'an unrecorded device'}" if self.seconds else \
                "training time not recorded"
            return f"training: {where}, not priced here; counted at the {hosted}"
        return f"training: {duration(self.seconds)} on {self.device} = {usd(self.usd)}; {hosted}"


def training_seconds(records: list[dict[str, Any]], status: dict[str, Any]) -> float | None:
    """Wall time of a run trained in one go (start to finish); for a resumed run, the sum of each
    attempt's span of logged records, since the time between attempts was not training."""
    attempts = {r.get("attempt", 1) for r in records if "time" in r}
    if len(attempts) <= 1 and status.get("started") and status.get("finished"):
        return float(status["finished"] - status["started"])
    spans = [[r["time"] for r in records if r.get("attempt", 1) == a and "time" in r] for a in attempts]
    total = sum(max(s) - min(s) for s in spans if s)
    return total or None


def training_cost(run: Run, records: list[dict[str, Any]]) -> TrainingCost:
    """The run's training (``records``: its ``Run.metrics()``), priced where it ran and at the hosted
    fine-tuning price for its tokens."""
    seconds = training_seconds(records, run.status())
    epochs = max((float(r["epoch"]) for r in records if isinstance(r.get("epoch"), (int, float))), default=0.0)
    tokens = round(run.manifest().train_tokens * epochs)
    device = run.settings().device
    hourly = gpu_table().usd_per_hour(device) if device else None
    table = price_table()
    model, per_million = min(table.usd_per_million.items(), key=lambda item: item[1])
    return TrainingCost(seconds, device, seconds * hourly / 3600 if seconds and hourly else None, tokens,
                        tokens * per_million / 1e6, model, table.as_of)


def serving_text(price: ServingPrice) -> str:
    return f"serving at ${price.usd_per_million:.2f} per 1M tokens ({price.basis}, as of {price.as_of})"
