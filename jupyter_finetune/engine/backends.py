"""Backends load the base model for LoRA training; both feed the same TRL SFTTrainer.

A backend is a small protocol, not a class hierarchy: ``hf`` (transformers + peft, bitsandbytes
4/8-bit on CUDA, fp32 on CPU) is here; ``unsloth`` joins it behind the same ``load``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .config import ConfigError, TrainConfig


@dataclass(frozen=True)
class Loaded:
    """What the trainer needs: the model, and the LoRA config for TRL to apply (None if applied)."""

    model: Any
    peft_config: Any
    precision: str


class Backend(Protocol):
    name: str

    def load(self, model_path: Path, config: TrainConfig) -> Loaded: ...


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    targets: Any = "all-linear" if config.target_modules == ("all-linear",) else list(config.target_modules)
    return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


@dataclass(frozen=True)
class HFBackend:
    name: str = "hf"

    def load(self, model_path: Path, config: TrainConfig) -> Loaded:
        import torch
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {}
        if cuda_available():
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            kwargs.update(dtype=dtype, device_map={"": 0})
            precision = str(dtype).removeprefix("torch.")
            if config.quant != "none":
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = (
                    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=dtype)
                    if config.quant == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
                precision = f"{config.quant} base, {precision} LoRA"
        else:
            kwargs["dtype"] = torch.float32
            precision = "fp32"
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
        if config.quant != "none":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
        return Loaded(model, lora_config(config), precision)


def select_backend(config: TrainConfig) -> tuple[Backend, str]:
    """The backend to use and, in words, why; refuses settings this machine cannot run."""
    cuda = cuda_available()
    if config.quant != "none" and not cuda:
        raise ConfigError(f"--quant {config.quant} needs an NVIDIA GPU (bitsandbytes); this kernel has none. "
                          "Use --quant none on CPU.")
    unsloth_installed = importlib.util.find_spec("unsloth") is not None
    if config.backend == "unsloth":
        raise ConfigError("the unsloth backend is not in this release yet; use --backend hf (or auto)"
                          if cuda and unsloth_installed else
                          "--backend unsloth needs an NVIDIA GPU and `pip install \"jupyter-finetune[unsloth]\"`"
                          f" ({'no CUDA device' if not cuda else 'unsloth is not installed'}); use --backend auto")
    if not cuda:
        _check_trl_on_cpu()
        return HFBackend(), "hf: no CUDA GPU, so transformers + peft LoRA in fp32 on CPU"
    return HFBackend(), f"hf: CUDA GPU{', ' + config.quant + ' base weights' if config.quant != 'none' else ''}"


def _check_trl_on_cpu() -> None:
    """TRL before 1.16 computes the loss with a Triton kernel that has no CPU driver."""
    from importlib.metadata import version

    from packaging.version import Version

    import trl.trainer.utils as trl_utils

    if Version(version("trl")) < Version("1.16") and hasattr(trl_utils, "add_fused_lm_head"):
        raise ConfigError(f"TRL {version('trl')} cannot train on CPU (its fused loss needs a GPU Triton driver); "
                          "run pip install 'trl>=1.16' for CPU training")
