"""The adapter folded into the base weights: in fp32, from the unquantized base, never into 4-bit weights.

A QLoRA run trained against 4-bit (or 8-bit) copies of the base. Folding its adapter into
dequantized 4-bit weights would bake the quantization error into every layer, so the merge
always starts from the base checkpoint on disk and the result is a 16-bit model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import saved_quantization
from ..models.peft_compat import tolerate_old_torchao
from ..models.quiet import library_noise_off
from .result import ExportError
from .source import RunSource

SIXTEEN_BIT = ("bfloat16", "float16")


def merged_dtype(source: RunSource) -> tuple[str, str | None]:
    """The dtype merged weights are saved in, and a note to the user when training was quantized.

    A full-precision run keeps the base checkpoint's own dtype; a quantized run gets a 16-bit
    copy (the checkpoint's, or bfloat16 when the checkpoint is fp32).
    """
    config = source.base_config
    stored = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32")
    stored = stored.removeprefix("torch.")
    if not source.quantized_training:
        return stored, None
    dtype = stored if stored in SIXTEEN_BIT else "bfloat16"
    return dtype, (f"run {source.run.name!r} trained on {source.settings.quant} quantized base weights (QLoRA); "
                   f"its adapter was merged into a {dtype} copy of the unquantized base model at {source.base_path}, "
                   "not into quantized weights")


def merged_model(source: RunSource) -> Any:
    """Base + adapter with the LoRA update added into each weight, in fp32."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    saved = saved_quantization(source.base_config)
    if saved:
        raise ExportError(f"run {source.run.name!r} was trained on {source.settings.model}, which is stored with "
                          f"{saved} weights only; merged, GGUF and Ollama exports need its unquantized weights. "
                          "Export --to adapter (it loads on top of that model), or train from the 16-bit model "
                          "(the same name without -bnb-4bit) with --quant 4bit: the same QLoRA, and it exports")
    tolerate_old_torchao()
    with library_noise_off():
        base = AutoModelForCausalLM.from_pretrained(source.base_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, source.run.adapter_dir)
    return model.merge_and_unload(safe_merge=True)


def save_merged(model: Any, tokenizer: Any, folder: Path, dtype: str) -> None:
    """safetensors weights, config, generation config and the tokenizer with its chat template."""
    import torch

    model.to(getattr(torch, dtype)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
