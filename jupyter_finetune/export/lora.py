"""A saved LoRA adapter as the update it adds to each base weight, computed a block of rows at a time.

Read from the adapter folder PEFT writes (adapter_config.json, adapter_model.safetensors) without
building a model, so the merge can stream the base: weight ``W`` becomes ``W + B @ A * scale``
(transposed for fan_in_fan_out layers), with ``scale = lora_alpha / r`` or ``lora_alpha / sqrt(r)``
under rsLoRA. What this arithmetic does not cover is refused before anything is written.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .result import ExportError

_PREFIX = "base_model.model."
_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<part>[AB])\.weight")
_UNSUPPORTED = {
    "use_dora": "DoRA (use_dora)",
    "rank_pattern": "per-module ranks (rank_pattern)",
    "alpha_pattern": "per-module alphas (alpha_pattern)",
    "modules_to_save": "fully trained modules (modules_to_save)",
    "lora_bias": "LoRA biases (lora_bias)",
    "trainable_token_indices": "trained token rows (trainable_token_indices)",
    "layer_replication": "replicated layers (layer_replication)",
    "target_parameters": "LoRA on parameters (target_parameters)",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
}
"""adapter_config.json keys whose non-empty value asks for more than B @ A * scale."""


@dataclass(frozen=True)
class LoraUpdate:
    """The update of one base weight: ``B @ A * scale``, shaped like the weight."""

    a: Any
    """(r, in) fp32 torch tensor."""
    b: Any
    """(out, r) fp32 torch tensor."""
    scale: float
    fan_in_fan_out: bool
    """The base stores this weight as (in, out) (GPT-2's Conv1D), so the update is transposed."""

    @property
    def shape(self) -> tuple[int, int]:
        out, _ = self.b.shape
        _, fan_in = self.a.shape
        return (fan_in, out) if self.fan_in_fan_out else (out, fan_in)

    def add_to(self, block: Any, first: int, stop: int) -> None:
        """Add rows ``first:stop`` of the update into ``block`` (fp32), in place: no temporary the block's size."""
        if self.fan_in_fan_out:
            block.addmm_(self.a[:, first:stop].T, self.b.T, alpha=self.scale)
        else:
            block.addmm_(self.b[first:stop], self.a, alpha=self.scale)


@dataclass(frozen=True)
class LoraAdapter:
    """Each adapted base weight's name (as the base checkpoint spells it) with its update."""

    updates: dict[str, LoraUpdate]

    @classmethod
    def load(cls, folder: Path) -> "LoraAdapter":
        """The adapter in ``folder``, checked: features beyond plain LoRA are refused by name."""
        import torch
        from safetensors import safe_open

        config = json.loads((folder / "adapter_config.json").read_text())
        kind = config.get("peft_type", "LORA")
        if kind != "LORA":
            raise ExportError(f"the adapter in {folder} is {kind}, not LoRA: merged, GGUF and Ollama exports merge "
                              "LoRA adapters only. Export --to adapter instead")
        used = [label for key, label in _UNSUPPORTED.items() if config.get(key)]
        if config.get("bias", "none") != "none":
            used.append(f"trained biases (bias={config['bias']!r})")
        if used:
            raise ExportError(f"the adapter in {folder} uses {', '.join(used)}, which merged, GGUF and Ollama exports "
                              "do not merge. Export --to adapter (it loads with PEFT), or train without it")
        parts: dict[str, dict[str, Any]] = {}
        with safe_open(folder / "adapter_model.safetensors", "pt") as f:
            for key in f.keys():
                match = _KEY.fullmatch(key.removeprefix(_PREFIX))
                if not key.startswith(_PREFIX) or match is None:
                    raise ExportError(f"the adapter in {folder} holds {key!r}, which is not a LoRA A or B matrix of a "
                                      "linear layer; merged, GGUF and Ollama exports cannot merge it. Export --to "
                                      "adapter instead")
                parts.setdefault(f"{match['module']}.weight", {})[match["part"]] = f.get_tensor(key).to(torch.float32)
        updates = {}
        for weight, ab in parts.items():
            if set(ab) != {"A", "B"}:
                raise ExportError(f"the adapter in {folder} has lora_{''.join(ab)} but not both A and B for "
                                  f"{weight!r}: it is damaged; train the run again")
            rank = ab["A"].shape[0]
            scale = config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)
            updates[weight] = LoraUpdate(ab["A"], ab["B"], scale, bool(config.get("fan_in_fan_out")))
        return cls(updates)
