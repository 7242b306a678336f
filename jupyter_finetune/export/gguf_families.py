"""What each model family needs in a GGUF file, following llama.cpp's convert_hf_to_gguf.py.

A family says which GGUF architecture it is, which hyperparameter keys it writes, the GGUF name
of each Hugging Face tensor and how a tensor's values change on the way (llama's q/k row
permutation, ...), and any tensor llama.cpp wants that the checkpoint lacks (Llama 3 rope
factors). The writer (gguf_writer.py) streams tensors through ``gguf_name`` and ``transform``
one at a time, so no family may need two tensors at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from .result import ExportError


def rope_parameters(config: Any) -> dict[str, Any]:
    """transformers 5 ``rope_parameters`` or 4.x ``rope_theta`` + ``rope_scaling``, as one dict."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    return params


def head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


@dataclass(frozen=True)
class GgufFamily:
    """The llama-like families: llama (and mistral, which llama.cpp runs as llama) and qwen2."""

    arch: str
    """The GGUF architecture name (``general.architecture``)."""
    rope_types: tuple[str, ...] = ("default",)
    permute_qk: bool = False
    """llama.cpp's llama rotates interleaved pairs where Hugging Face rotates halves."""

    @property
    def model_arch(self) -> Any:
        import gguf

        return next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == self.arch)

    def check(self, config: Any) -> None:
        """Refuse, before any weight loads, what this family's GGUF cannot express."""
        rope_type = rope_parameters(config)["rope_type"]
        if rope_type not in self.rope_types:
            raise ExportError(f"GGUF export does not handle {rope_type!r} rope scaling for {config.model_type}; "
                              f"supported: {', '.join(self.rope_types)}. Export --to merged and convert it with "
                              "llama.cpp's convert_hf_to_gguf.py")

    def write_hyperparameters(self, writer: Any, config: Any) -> None:
        n_head = config.num_attention_heads
        dim = head_dim(config)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
        writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_rope_dimension_count(dim)
        if dim != config.hidden_size // n_head:
            writer.add_key_length(dim)
            writer.add_value_length(dim)

    def gguf_name(self, hf_name: str, config: Any) -> str | None:
        """The tensor's GGUF name; None for a tensor the file leaves out (a tied output head)."""
        import gguf

        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            return None  # llama.cpp reuses token_embd when there is no output.weight
        name = gguf.get_tensor_name_map(self.model_arch, config.num_hidden_layers).get_name(
            hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"tensor {hf_name!r} has no GGUF name in the {self.arch} architecture; this model has "
                              "parts llama.cpp's converter would need to handle. Export --to merged instead")
        return name

    def transform(self, hf_name: str, data: Any, config: Any) -> Any:
        """The tensor's values as llama.cpp reads them (float32 numpy in, float32 numpy out, same shape)."""
        if self.permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            return _permute(data, config.num_attention_heads)
        if self.permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            return _permute(data, getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
        return data

    def extra_tensors(self, config: Any) -> Iterator[tuple[str, Any]]:
        """Tensors llama.cpp needs that the checkpoint does not hold, as (GGUF name, float32 numpy)."""
        import gguf

        if rope_parameters(config)["rope_type"] == "llama3":
            yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", _llama3_rope_factors(config)


FAMILIES = {
    "llama": GgufFamily("llama", rope_types=("default", "llama3"), permute_qk=True),
    "mistral": GgufFamily("llama", rope_types=("default", "llama3"), permute_qk=True),
    "qwen2": GgufFamily("qwen2"),
}
"""Hugging Face model_type -> its GGUF family."""
SUPPORTED = "llama (LlamaForCausalLM), mistral (MistralForCausalLM) and qwen2 (Qwen2ForCausalLM)"


def family_of(config: Any) -> GgufFamily:
    """The config's GGUF family, checked; or an error naming the supported ones (before weights load)."""
    model_type = getattr(config, "model_type", None)
    family = FAMILIES.get(model_type)
    if family is None:
        raise ExportError(f"GGUF export supports the {SUPPORTED} families; this model is {model_type!r} "
                          f"({', '.join(getattr(config, 'architectures', None) or ['unknown class'])}). "
                          "Export --to merged and convert it with llama.cpp's convert_hf_to_gguf.py")
    family.check(config)
    return family


def _permute(weights: Any, n_head: int) -> Any:
    """Rows of each head from [first halves, second halves] to interleaved pairs, as llama.cpp expects."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _llama3_rope_factors(config: Any) -> Any:
    """Per-frequency divisors for Llama 3.1+ rope scaling, as llama.cpp's converter computes them."""
    import numpy as np

    rope = rope_parameters(config)
    dim = head_dim(config)
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for i in range(0, dim, 2):
        wavelength = 2 * math.pi * rope["rope_theta"] ** (i / dim)
        if wavelength < old_context / high:
            factors.append(1.0)
        elif wavelength > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)
