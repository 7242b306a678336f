"""One TrainConfig: presets fill it, flags override its fields, and it is saved with every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..data.length import EXAMPLES_SEEN, VALIDATION, steps_per_epoch
from ..errors import FinetuneError

__all__ = ["METHOD_DEFAULTS", "PRESETS", "ConfigError", "TrainConfig", "build_config", "steps_per_epoch"]

QUANTS = ("none", "4bit", "8bit")
BACKENDS = ("auto", "hf", "unsloth")
STRATEGIES = ("ddp", "fsdp")
METHODS = ("sft", "dpo", "orpo")
PREFERENCE_METHODS = ("dpo", "orpo")
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
              "aot_pair", "apo_zero", "apo_down", "discopop")
"""DPO losses every TRL we admit knows (DPOConfig.loss_type); sigmoid is the paper's."""
REPORTERS = ("tensorboard", "mlflow", "wandb")


class ConfigError(FinetuneError, ValueError):
    """Every invalid setting at once, each with what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    model: str = "smollm2-135m"
    """Alias, local folder, .gguf file or hub id (downloaded once when online)."""
    epochs: float | None = None
    """Passes over the training split; ignored when ``steps`` is set. None (with no ``steps``): chosen
    from the data when training is prepared (data.length), and saved as chosen."""
    steps: int | None = None
    """Optimizer steps; overrides ``epochs``."""
    examples_seen: int = EXAMPLES_SEEN
    """Examples (each counted once per pass) that a length chosen from the data aims to show."""
    batch_size: int = 8
    """Examples per device step."""
    grad_accum: int = 1
    """Steps accumulated per optimizer step (effective batch = batch_size * grad_accum)."""
    lr: float = 2e-4
    """Peak learning rate (linear warm-up, then linear decay)."""
    warmup_ratio: float = 0.05
    """Fraction of steps spent warming up."""
    rank: int = 16
    """LoRA rank r."""
    alpha: int = 32
    """LoRA alpha; the update is scaled by alpha / rank."""
    dropout: float = 0.05
    """LoRA dropout."""
    target_modules: tuple[str, ...] = ("all-linear",)
    """Modules that get adapters: all-linear, or names such as q_proj,v_proj."""
    max_length: int = 1024
    """Tokens per example; longer examples are cut at the end."""
    seed: int = 0
    """Seed for initialisation, shuffling and dropout."""
    quant: str = "none"
    """Base weights in 4bit (QLoRA, CUDA only), 8bit, or none."""
    backend: str = "auto"
    """auto, hf (transformers + peft) or unsloth (NVIDIA GPU)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower."""
    save_steps: int | None = None
    """Checkpoint every N optimizer steps; None: every 10 minutes of training (engine.callbacks.CheckpointTimer)."""
    logging_steps: int = 1
    """Metrics every N optimizer steps."""
    report_to: tuple[str, ...] = field(default_factory=tuple)
    """Also log to tensorboard, mlflow and/or wandb."""
    validation: float = VALIDATION
    """Fraction of the training split set aside to score generations during training (at most
    MOST_VALIDATION_ROWS rows; none when that leaves fewer than 2); 0 turns validation off."""
    early_stopping: bool | None = None
    """Stop once the validation score has not improved for ``patience`` validations. None: on when the
    training length was chosen from the data, off when epochs or steps were given."""
    patience: int = 3
    """Validations without a better score before early stopping ends training."""
    gpus: int = 1
    """Data-parallel processes, one per GPU, launched with accelerate (engine.launch). Each takes
    ``batch_size * grad_accum`` examples per optimizer step, so the global batch grows with them. On a
    machine without a GPU they are CPU processes (gloo): the multi-process path, not a speed-up."""
    strategy: str = "ddp"
    """With several GPUs: ddp (a whole copy of the model on each) or fsdp (weights sharded across them)."""
    method: str = "sft"
    """sft (learn the answers), dpo (prefer the chosen answer of each pair over the rejected one, against
    a frozen reference: the model at step 0) or orpo (both in one pass, no reference)."""
    beta: float = 0.1
    """dpo: how far from the reference the policy may move (higher: closer); orpo: the weight of the
    preference term."""
    loss: str = "sigmoid"
    """dpo's loss (TRL's loss_type): sigmoid (the paper's), ipo, hinge, robust, ..."""
    from_run: str | None = None
    """Start from this run's adapter (usually an SFT run on the same model): it is trained further, and
    under dpo it is also the reference."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("examples_seen", "batch_size", "grad_accum", "rank", "alpha", "max_length", "save_steps",
                     "logging_steps", "patience", "gpus"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.steps is not None and self.steps < 1:
            problems.append(f"steps must be at least 1 (got {self.steps})")
        if self.epochs is not None and self.epochs <= 0:
            problems.append(f"epochs must be positive (got {self.epochs})")
        if not 0 < self.lr < 1:
            problems.append(f"lr must be between 0 and 1 (got {self.lr})")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if not 0 <= self.validation <= 0.5:
            problems.append(f"validation must be a fraction in [0, 0.5] of the training rows (got {self.validation})")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.beta <= 0:
            problems.append(f"beta must be positive (got {self.beta})")
        for name, value, allowed in (("quant", self.quant, QUANTS), ("backend", self.backend, BACKENDS),
                                     ("strategy", self.strategy, STRATEGIES), ("method", self.method, METHODS),
                                     ("loss", self.loss, DPO_LOSSES)):
            if value not in allowed:
                problems.append(f"{name} {value!r} is not one of {', '.join(allowed)}")
        if self.strategy == "fsdp" and self.gpus is not None and self.gpus < 2:
            problems.append("strategy fsdp shards the model across GPUs: give gpus 2 or more (or leave strategy out)")
        problems += [f"report_to {r!r} is not one of {', '.join(REPORTERS)}" for r in self.report_to if r not in REPORTERS]
        if problems:
            raise ConfigError("invalid training settings:\n  - " + "\n  - ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def epoch_steps(self, rows: int) -> int:
        """Optimizer steps in one pass over ``rows`` examples: every process takes its own batches."""
        return steps_per_epoch(rows, self.batch_size * self.gpus, self.grad_accum)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "TrainConfig":
        """The inverse of ``to_dict`` after a JSON round trip (lists back to tuples); fields a newer
        version added keep their defaults, so a run saved before them still reads."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in saved settings: known are "
                              f"{', '.join(sorted(known))}")
        saved = {"validation": 0.0, **saved}  # runs saved before validation slices trained on every row
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"examples_seen": EXAMPLES_SEEN // 2, "rank": 8, "alpha": 16, "lr": 3e-4},
    "balanced": {"examples_seen": EXAMPLES_SEEN, "rank": 16, "alpha": 32, "lr": 3e-4},
    "thorough": {"examples_seen": EXAMPLES_SEEN * 2, "rank": 32, "alpha": 64, "lr": 2e-4, "warmup_ratio": 0.1},
}
"""Each preset's training length comes from the data unless given (data.length); bench/bench_defaults.py
measures them against a grid of hand-set ones (bench/results/defaults-cpu2.json)."""



METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "dpo": {"lr": 2e-4, "examples_seen": EXAMPLES_SEEN // 8},
}
"""What DPO changes in every preset: about 100 pairs seen in all (one pass from 100 pairs up, more passes below
that), not SFT's many, since DPO over-optimises the margin on pairs it has seen; and a LoRA learning rate a
little below SFT's. Published LoRA DPO recipes use about 5e-6 over thousands of steps (TRL's scripts/dpo.py,
the alignment handbook); one short pass needs more. On the example, DPO at 1e-4 and 2e-4 ranked 29/32 held-out
pairs right and 5e-4 overshot to 0.81 (bench/results/preference-cpu2.json). ORPO keeps the preset's SFT values:
its loss is SFT's on the chosen answers plus a small odds-ratio term, and trained from the base it replaces SFT
(on DPO's short pass it ranked 0.69, below the base's 0.72)."""


def build_config(preset: str = "balanced", **overrides: Any) -> TrainConfig:
    """The preset's values, the method's, then every override that is not None."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: known are {', '.join(sorted(known))}")
    method = METHOD_DEFAULTS.get(overrides.get("method") or "sft", {})
    values = {**PRESETS[preset], **method, **{k: v for k, v in overrides.items() if v is not None}}
    for name in ("target_modules", "report_to"):
        if isinstance(values.get(name), str):
            values[name] = tuple(s.strip() for s in values[name].split(",") if s.strip())
    return replace(TrainConfig(), **values)


