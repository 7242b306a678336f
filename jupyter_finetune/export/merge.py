"""The adapter folded into the base weights: in fp32, from the unquantized base, never into 4-bit weights,
streamed tensor by tensor so host RAM stays near one block of rows whatever the model's size.

A QLoRA run trained against 4-bit (or 8-bit) copies of the base. Folding its adapter into
dequantized 4-bit weights would bake the quantization error into every layer, so the merge
always starts from the base checkpoint on disk and the result is a 16-bit model.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..models import saved_quantization
from .checkpoint import INDEX, Checkpoint, SafetensorsWriter, StoredTensor
from .lora import LoraAdapter
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


@dataclass(frozen=True)
class MergedWeights:
    """Base + adapter as a stream of tensors: each one read, updated in fp32 and handed on a block of rows at a
    time. Checked when made, so that nothing is written for an adapter or a base the merge cannot handle."""

    base: Checkpoint
    config: Any
    adapter: LoraAdapter

    @classmethod
    def of(cls, base_path: Path, config: Any, adapter_dir: Path | None) -> "MergedWeights":
        """``adapter_dir`` None: the base alone (what a GGUF of an untrained model holds)."""
        base = Checkpoint.at(base_path)
        adapter = LoraAdapter.load(adapter_dir) if adapter_dir is not None else LoraAdapter({})
        stored = {t.name: t for t in base.tensors()}
        adapter = LoraAdapter({_stored_name(name, stored): update for name, update in adapter.updates.items()})
        for name, update in adapter.updates.items():
            tensor = stored.get(name)
            if tensor is None:
                raise ExportError(f"the adapter updates {name!r}, which the base model at {base_path} does not "
                                  "hold: the run was trained on another model. Export --to adapter instead")
            if tensor.shape != update.shape or not tensor.is_float:
                raise ExportError(f"the adapter's update of {name!r} is {list(update.shape)} but the base model at "
                                  f"{base_path} stores it as {tensor.dtype} {list(tensor.shape)}: the run was trained "
                                  "on another model. Export --to adapter instead")
        return cls(base, config, adapter)

    def tensors(self) -> Iterator[StoredTensor]:
        return self.base.tensors()

    def blocks(self, tensor: StoredTensor) -> Iterator[Any]:
        """The merged tensor as fp32 torch blocks of rows (stored dtype for a non-float tensor)."""
        update = self.adapter.updates.get(tensor.name)
        for first, stop in tensor.row_blocks():
            block = tensor.read(first, stop)
            if not tensor.is_float:
                yield block
                continue
            block = block.float()
            if update is not None:
                update.add_to(block, first, stop)
            yield block


def merged_weights(source: RunSource) -> MergedWeights:
    """The run's adapter over its unquantized base, checked before any weight is read."""
    saved = saved_quantization(source.base_config)
    if saved:
        raise ExportError(f"run {source.run.name!r} was trained on {source.settings.model}, which is stored with "
                          f"{saved} weights only; merged, GGUF and Ollama exports need its unquantized weights. "
                          "Export --to adapter (it loads on top of that model), or train from the 16-bit model "
                          "(the same name without -bnb-4bit) with --quant 4bit: the same QLoRA, and it exports")
    return MergedWeights.of(source.base_path, source.base_config, source.run.adapter_dir)


def save_merged(weights: MergedWeights, tokenizer: Any, folder: Path, dtype: str) -> None:
    """The base's shards, each written as soon as it is merged, with its index, config (in ``dtype``), generation
    config and the tokenizer with its chat template: a folder AutoModelForCausalLM.from_pretrained loads."""
    import torch
    from transformers import GenerationConfig

    target = getattr(torch, dtype)
    weight_map, total = {}, 0
    for file, tensors in weights.base.shards:
        layout = [(t.name, dtype if t.is_float else t.torch_dtype, t.shape) for t in tensors]
        with SafetensorsWriter(folder / file, layout) as out:
            for tensor in tensors:
                out.write(tensor.name, (b.to(target) if tensor.is_float else b for b in weights.blocks(tensor)))
                weight_map[tensor.name] = file
            total += out.data_bytes
    if weights.base.sharded:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    config = copy.deepcopy(weights.config)
    config.dtype = target
    config.save_pretrained(folder)
    try:
        generation = GenerationConfig.from_pretrained(weights.base.folder)
    except OSError:  # the base has none: the defaults its config implies, as save_pretrained writes them
        generation = GenerationConfig.from_model_config(config)
    generation.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


_WRAPPERS = frozenset({"model", "language_model"})
"""Leading name parts a model class may nest in either order: multimodal checkpoints (Gemma 3 4B and up) store
``language_model.model.layers...`` and ``vision_tower...`` where the loaded model, and so its adapter, says
``model.language_model.layers...`` and ``model.vision_tower...``."""


def _stored_name(name: str, stored: dict[str, Any]) -> str:
    """The base checkpoint's spelling of an adapted weight's name (itself when the checkpoint has it)."""
    if name in stored:
        return name
    key = _unwrapped(name)
    matches = [s for s in stored if _unwrapped(s) == key]
    return matches[0] if len(matches) == 1 else name


def _unwrapped(name: str) -> str:
    parts = name.split(".")
    lead = 0
    while lead < len(parts) - 1 and parts[lead] in _WRAPPERS:
        lead += 1
    return ".".join(parts[lead:])

