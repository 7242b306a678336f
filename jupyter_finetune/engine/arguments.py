"""The TRL trainer arguments every method shares, and the data-parallel ones of a launched process."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..data.dataset import ValidationSplit
from .backends import cuda_available
from .config import TrainConfig
from .launch import FSDP_CONFIG, Launch, sharded


def trainer_args(kind: type, config: TrainConfig, output_dir: Path, split: ValidationSplit, validated: bool,
                 eval_steps: int, **method: Any) -> Any:
    """A TRL config of class ``kind`` (SFTConfig, DPOConfig, ...) with what every method shares: length,
    batch, optimiser, checkpoints, precision, reporting; ``method`` adds its own fields."""
    import torch

    cuda = cuda_available()
    # transformers 5.24 renamed the field; Unsloth's pins (transformers<=5.17) know only the old name
    renamed = "activation_checkpointing" in {f.name for f in dataclasses.fields(kind)}
    checkpointing = {"activation_checkpointing" if renamed else "gradient_checkpointing":
                     config.gradient_checkpointing and not sharded(config)}  # FSDP checkpoints itself (_parallel)
    return kind(
        output_dir=str(output_dir), seed=config.seed, data_seed=config.seed,
        num_train_epochs=config.epochs or 1.0, max_steps=config.steps or -1,  # epochs None: steps are set
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr, lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio, logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500, save_total_limit=2,
        eval_strategy="steps" if split.validation and not validated else "no", eval_steps=eval_steps,
        max_length=config.max_length,
        **checkpointing,  # TRL's own default is on
        bf16=cuda and torch.cuda.is_bf16_supported(), fp16=cuda and not torch.cuda.is_bf16_supported(),
        use_cpu=not cuda, report_to=list(config.report_to), disable_tqdm=True, dataloader_num_workers=0,
        **_parallel(config) if Launch.current() else {}, **method,
    )


def _parallel(config: TrainConfig) -> dict[str, Any]:
    """The Trainer's own data-parallel settings, so that a bare torchrun launch trains as accelerate's config says."""
    if config.strategy == "fsdp":  # FSDP's own activation checkpointing: the Trainer's adds an all-gather per layer
        return {"fsdp": "full_shard auto_wrap",
                "fsdp_config": {**FSDP_CONFIG, "fsdp_activation_checkpointing": config.gradient_checkpointing}}
    return {"ddp_find_unused_parameters": False}  # every LoRA weight takes part in each step
