"""Backends load the base model for LoRA training; both feed the same TRL SFTTrainer.

A backend is a small protocol, not a class hierarchy: ``hf`` (transformers + peft, bitsandbytes
4/8-bit on CUDA, fp32 on CPU) and ``unsloth`` (NVIDIA GPUs; imported only when chosen, because it
patches transformers and TRL at import) share one ``load``; what follows is the same SFTTrainer.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..models.peft_compat import tolerate_old_torchao
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

    tolerate_old_torchao()
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


@dataclass(frozen=True)
class UnslothBackend:
    """Unsloth's kernels and offloaded gradient checkpointing: the same LoRA in less time and memory.

    Unsloth is at its fastest with ``--dropout 0``; other values train correctly, a little slower.
    """

    name: str = "unsloth"

    def load(self, model_path: Path, config: TrainConfig) -> Loaded:
        import torch
        from unsloth import FastLanguageModel

        checkpointing: str | bool = "unsloth" if config.gradient_checkpointing else False
        model, _ = FastLanguageModel.from_pretrained(
            model_name=str(model_path), max_seq_length=config.max_length, dtype=None,
            load_in_4bit=config.quant == "4bit", load_in_8bit=config.quant == "8bit",
            load_in_16bit=config.quant == "none", use_gradient_checkpointing=checkpointing, random_state=config.seed)
        targets: Any = "all-linear" if config.target_modules == ("all-linear",) else list(config.target_modules)
        model = FastLanguageModel.get_peft_model(
            model, r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets,
            use_gradient_checkpointing=checkpointing, random_state=config.seed)
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        base = f"{config.quant} base, {dtype} LoRA" if config.quant != "none" else dtype
        return Loaded(model, None, f"{base} (unsloth)")


UNSLOTH_INSTALL = 'pip install "jupyter-finetune[unsloth]"'
GPU_INSTALL = 'pip install "jupyter-finetune[gpu]"'


def unsloth_problems(cuda: bool) -> list[str]:
    """Why unsloth cannot run here (empty if it can), read from package metadata without importing it."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    problems = [] if cuda else ["this kernel has no CUDA GPU (unsloth trains on NVIDIA GPUs)"]
    try:
        wanted = [Requirement(r) for r in requires("unsloth") or []]
    except PackageNotFoundError:
        return [*problems, f"unsloth is not installed ({UNSLOTH_INSTALL})"]
    for req in wanted:
        if req.name not in _PINNED or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            have = version(req.name)
        except PackageNotFoundError:
            problems.append(f"unsloth {version('unsloth')} needs {req} (not installed)")
            continue
        if not req.specifier.contains(have, prereleases=True):
            problems.append(f"unsloth {version('unsloth')} needs {req.name}{req.specifier} ({have} is installed)")
    return problems


_PINNED = ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "unsloth_zoo", "unsloth-zoo")
"""The libraries whose versions decide whether unsloth's patches apply; its other requirements do not."""


def unsloth_blockers(cuda: bool) -> list[str]:
    """``unsloth_problems``, then (only if there are none) the import itself, done now, before TRL builds
    a trainer, so unsloth's patches apply."""
    problems = unsloth_problems(cuda)
    if problems:
        return problems
    try:
        import unsloth  # noqa: F401
    except Exception as e:  # unsloth checks drivers and versions at import and raises many kinds of error
        return [f"import unsloth failed: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"]
    return []


def select_backend(config: TrainConfig) -> tuple[Backend, str]:
    """The backend to use and, in words, why; refuses settings this machine cannot run.

    ``auto`` takes unsloth on an NVIDIA GPU where it is installed and importable, and hf otherwise;
    an explicit ``unsloth`` that cannot run is an error that says why, never a silent fallback.
    """
    cuda = cuda_available()
    if config.quant != "none" and not cuda:
        raise ConfigError(f"--quant {config.quant} needs an NVIDIA GPU (bitsandbytes); this kernel has none. "
                          "Use --quant none on CPU.")
    if config.quant != "none" and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"--quant {config.quant} needs bitsandbytes: {GPU_INSTALL} "
                          f"(or {UNSLOTH_INSTALL}), then restart the kernel")
    if config.backend == "unsloth":
        problems = unsloth_blockers(cuda)
        if problems:
            fix = ("run on an NVIDIA GPU (Colab or Kaggle: pick a GPU runtime)" if not cuda else
                   f"in a fresh environment, {UNSLOTH_INSTALL}")
            raise ConfigError("--backend unsloth cannot run here:\n  - " + "\n  - ".join(problems)
                              + f"\nFix: {fix}; or use --backend auto (or hf) to train with transformers + peft")
        return UnslothBackend(), f"unsloth: CUDA GPU, {_weights(config)}"
    if not cuda:
        _check_trl_on_cpu()
        return HFBackend(), "hf: no CUDA GPU, so transformers + peft LoRA in fp32 on CPU"
    if config.backend == "auto" and importlib.util.find_spec("unsloth") is not None:
        why_not = unsloth_blockers(cuda)
        if not why_not:
            return UnslothBackend(), f"unsloth: CUDA GPU with unsloth installed, {_weights(config)}"
        return HFBackend(), f"hf: unsloth is installed but cannot run ({'; '.join(why_not)}), {_weights(config)}"
    return HFBackend(), f"hf: CUDA GPU, {_weights(config)}"


def _weights(config: TrainConfig) -> str:
    return {"none": "16-bit base weights", "4bit": "4-bit base weights (QLoRA)", "8bit": "8-bit base weights"}[
        config.quant]


def _check_trl_on_cpu() -> None:
    """TRL before 1.16 computes the loss with a Triton kernel that has no CPU driver."""
    from importlib.metadata import version

    from packaging.version import Version

    import trl.trainer.utils as trl_utils

    if Version(version("trl")) < Version("1.16") and hasattr(trl_utils, "add_fused_lm_head"):
        raise ConfigError(f"TRL {version('trl')} cannot train on CPU (its fused loss needs a GPU Triton driver); "
                          "run pip install 'trl>=1.16' for CPU training")
