"""Base model with a run's adapter attached: one copy in memory serves both systems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.peft_compat import tolerate_old_torchao
from ..models.quiet import library_noise_off
from ..models.tokenizer import training_tokenizer


def load_with_adapter(model_path: Path, adapter_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer as training used it); inside ``model.disable_adapter()`` the model is the base model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tolerate_old_torchao()
    with library_noise_off():
        tokenizer = training_tokenizer(model_path, adapter_dir)
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, adapter_dir).eval()
    return model, tokenizer
