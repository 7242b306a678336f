"""What each model family needs in a GGUF file, following llama.cpp's convert_hf_to_gguf.py.

A family says which GGUF architecture it is, which hyperparameter keys it writes, the GGUF name
of each Hugging Face tensor and how a tensor's values change on the way (llama's q/k row
permutation, Gemma's norms + 1), and any tensor llama.cpp wants that the checkpoint lacks (Llama 3
rope factors, Phi-3's long-context rope factors). ``GgufFamily`` holds the llama-like families
(llama, mistral, qwen2, qwen3); ``GemmaFamily`` and ``Phi3Family`` add what their converter
classes add; ``LanguageModelOf`` exports the language model of a multimodal checkpoint. The
writer (gguf_writer.py) streams tensors through ``gguf_name`` and ``transform``
one at a time, so no family may need two tensors at once, and a block of rows at a time unless
``mixes_rows`` says the transform needs the whole tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from .result import ExportError


_QK = ("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")


def rope_parameters(config: Any, layer_type: str = "full_attention") -> dict[str, Any]:
    """transformers 5 ``rope_parameters`` or 4.x ``rope_theta`` + ``rope_scaling``, as one dict.

    Models with per-layer-type rope (Gemma 3) nest one dict per layer type; ``layer_type`` picks one.
    """
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params = dict(params.get(layer_type) or params.get("full_attention") or params)
    params.setdefault("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    return params


def head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


@dataclass(frozen=True)
class GgufFamily:
    """The llama-like families: llama (and mistral, which llama.cpp runs as llama), qwen2 and qwen3."""

    arch: str
    """The GGUF architecture name (``general.architecture``)."""
    rope_types: tuple[str, ...] = ("default",)
    permute_qk: bool = False
    """llama.cpp's llama rotates interleaved pairs where Hugging Face rotates halves."""
    swa_pattern: int = 0
    """llama.cpp's sliding-window layer pattern for this arch (every n-th layer global); 0 for none."""

    @property
    def model_arch(self) -> Any:
        import gguf

        return next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == self.arch)

    def check(self, config: Any) -> None:
        """Refuse, before any weight loads, what this family's GGUF cannot express."""
        import gguf

        if self.arch not in gguf.MODEL_ARCH_NAMES.values():
            from importlib.metadata import version

            raise ExportError(f"GGUF export of {config.model_type} needs a gguf package that knows llama.cpp's "
                              f"{self.arch!r} architecture; gguf {version('gguf')} is installed. Run pip install -U "
                              "gguf, then restart the kernel")
        rope_type = rope_parameters(config)["rope_type"]
        if rope_type not in self.rope_types:
            raise ExportError(f"GGUF export does not handle {rope_type!r} rope scaling for {config.model_type}; "
                              f"supported: {', '.join(self.rope_types)}. Export --to merged and convert it with "
                              "llama.cpp's convert_hf_to_gguf.py")
        layer_types = list(getattr(config, "layer_types", None) or [])
        if layer_types and layer_types != self.layer_types(config.num_hidden_layers):
            raise ExportError(f"GGUF export of {config.model_type} needs llama.cpp's layout of sliding-window and "
                              f"full-attention layers ({self._swa_layout()}); this model has {layer_types}. "
                              "Export --to merged instead")

    def layer_types(self, n_layers: int) -> list[str]:
        """Attention per layer as llama.cpp runs this arch: every ``swa_pattern``-th layer global."""
        pattern = self.swa_pattern
        return ["sliding_attention" if pattern and (i + 1) % pattern else "full_attention" for i in range(n_layers)]

    def _swa_layout(self) -> str:
        if not self.swa_pattern:
            return "no sliding window"
        return f"one full-attention layer in every {self.swa_pattern}, the others sliding"

    def write_hyperparameters(self, writer: Any, config: Any) -> None:
        n_head = config.num_attention_heads
        dim = head_dim(config)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
        rope = rope_parameters(config)
        writer.add_rope_freq_base(float(rope["rope_theta"]))
        if rope["rope_type"] == "linear":
            import gguf

            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_rope_dimension_count(_rotary_dims(config))
        writer.add_key_length(dim)  # llama.cpp's default, hidden / heads, is wrong for Qwen3, Gemma, Llama 3.2 ...
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

    def mixes_rows(self, hf_name: str) -> bool:
        """Whether ``transform`` moves values between rows (and so needs the whole tensor, not a block of rows)."""
        return self.permute_qk and hf_name.endswith(_QK)

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


@dataclass(frozen=True)
class GemmaFamily(GgufFamily):
    """Gemma 2 and 3: norms stored as w where HF computes x * (1 + w), capped logits, sliding windows.

    llama.cpp scales the embeddings by sqrt(hidden_size) itself, as HF does, so no tensor carries it.
    """

    attention_softcap: bool = False
    """Whether llama.cpp's arch soft-caps attention scores: Gemma 2 always, Gemma 3 never."""
    layers_of_27b: int = 0
    """The layer count llama.cpp takes for the 27B, whose queries it scales by hidden / heads, not the head size."""

    def check(self, config: Any) -> None:
        super().check(config)
        heads = config.num_attention_heads
        scalar = config.hidden_size // heads if config.num_hidden_layers == self.layers_of_27b else head_dim(config)
        if config.query_pre_attn_scalar != scalar:
            raise ExportError(f"GGUF export of {config.model_type} needs query_pre_attn_scalar {scalar} as in Google's "
                              f"checkpoints (llama.cpp scales queries by it, from the model's shape); this model has "
                              f"{config.query_pre_attn_scalar}. Export --to merged instead")
        if (getattr(config, "attn_logit_softcapping", None) is not None) != self.attention_softcap:
            raise ExportError(f"GGUF export of {config.model_type} needs attn_logit_softcapping "
                              f"{'set' if self.attention_softcap else 'unset'}, as llama.cpp's {self.arch} runs it; "
                              f"this model has {config.attn_logit_softcapping}. Export --to merged instead")

    def write_hyperparameters(self, writer: Any, config: Any) -> None:
        super().write_hyperparameters(writer, config)
        if self.attention_softcap:
            writer.add_attn_logit_softcapping(config.attn_logit_softcapping)
        if getattr(config, "final_logit_softcapping", None) is not None:
            writer.add_final_logit_softcapping(config.final_logit_softcapping)
        writer.add_sliding_window(config.sliding_window)
        writer.add_rope_freq_base_swa(float(rope_parameters(config, "sliding_attention")["rope_theta"]))

    def transform(self, hf_name: str, data: Any, config: Any) -> Any:
        return data + 1 if hf_name.endswith("norm.weight") else data


@dataclass(frozen=True)
class Phi3Family(GgufFamily):
    """Phi-3, 3.5 and 4: fused qkv and gate_up (llama.cpp splits them), partial rotary, long-context rope.

    Phi-3.5-mini and the 128k Phi-3s carry 'longrope' factors: llama.cpp reads them as two
    tensors, picking the long ones when its context exceeds the original one, as HF does by length.
    """

    def write_hyperparameters(self, writer: Any, config: Any) -> None:
        super().write_hyperparameters(writer, config)
        writer.add_rope_scaling_orig_ctx_len(_original_context(config))
        writer.add_sliding_window(getattr(config, "sliding_window", None) or 0)  # 0 tells Phi-4 apart
        if rope_parameters(config)["rope_type"] == "longrope":
            writer.add_rope_scaling_attn_factors(_longrope_attention_factor(config))

    def extra_tensors(self, config: Any) -> Iterator[tuple[str, Any]]:
        import gguf
        import numpy as np

        rope = rope_parameters(config)
        if rope["rope_type"] == "longrope":
            for tensor, key in ((gguf.MODEL_TENSOR.ROPE_FACTORS_LONG, "long_factor"),
                                (gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT, "short_factor")):
                yield gguf.TENSOR_NAMES[tensor] + ".weight", np.array(rope[key], dtype=np.float32)


@dataclass(frozen=True)
class LanguageModelOf:
    """The text part of a multimodal checkpoint (Gemma 3 4B and up) as its text family's GGUF.

    Its config holds the language model's settings in ``text_config`` and its tensors under
    ``model.language_model.``; the vision tower and projector are left out, as llama.cpp's converter
    leaves them to a separate mmproj file.
    """

    text: GgufFamily
    vision_prefixes: tuple[str, ...] = ("model.vision_tower.", "model.multi_modal_projector.", "vision_tower.",
                                        "multi_modal_projector.")
    """As the loaded model and as the checkpoint on disk name them (transformers renames on load)."""

    @property
    def arch(self) -> str:
        return self.text.arch

    def check(self, config: Any) -> None:
        self.text.check(config.text_config)

    def write_hyperparameters(self, writer: Any, config: Any) -> None:
        self.text.write_hyperparameters(writer, config.text_config)

    def gguf_name(self, hf_name: str, config: Any) -> str | None:
        if hf_name.startswith(self.vision_prefixes):
            return None
        return self.text.gguf_name(self._text_name(hf_name), config.text_config)

    def mixes_rows(self, hf_name: str) -> bool:
        return self.text.mixes_rows(self._text_name(hf_name))

    def transform(self, hf_name: str, data: Any, config: Any) -> Any:
        return self.text.transform(self._text_name(hf_name), data, config.text_config)

    def extra_tensors(self, config: Any) -> Iterator[tuple[str, Any]]:
        return self.text.extra_tensors(config.text_config)

    @staticmethod
    def _text_name(hf_name: str) -> str:
        """The text family's name: ``model.language_model.X`` (loaded) or ``language_model.model.X`` (on disk)
        is ``model.X``; the on-disk ``language_model.lm_head`` is ``lm_head``."""
        for prefix, text in (("model.language_model.", "model."), ("language_model.model.", "model."),
                             ("language_model.", "")):
            if hf_name.startswith(prefix):
                return text + hf_name.removeprefix(prefix)
        return hf_name


_GEMMA3 = GemmaFamily("gemma3", rope_types=("default", "linear"), swa_pattern=6, layers_of_27b=62)
FAMILIES = {
    "llama": GgufFamily("llama", rope_types=("default", "llama3"), permute_qk=True),
    "mistral": GgufFamily("llama", rope_types=("default", "llama3"), permute_qk=True),
    "qwen2": GgufFamily("qwen2"),
    "qwen3": GgufFamily("qwen3"),
    "gemma2": GemmaFamily("gemma2", swa_pattern=2, attention_softcap=True, layers_of_27b=46),
    "gemma3_text": _GEMMA3,
    "gemma3": LanguageModelOf(_GEMMA3),
    "phi3": Phi3Family("phi3", rope_types=("default", "longrope")),
}
"""Hugging Face model_type -> its GGUF family."""
SUPPORTED = ("llama (LlamaForCausalLM, Llama 3.x rope scaling included), mistral (MistralForCausalLM), qwen2 "
             "(Qwen2ForCausalLM), qwen3 (Qwen3ForCausalLM), gemma2 (Gemma2ForCausalLM), gemma3_text "
             "(Gemma3ForCausalLM: text-only Gemma 3), gemma3 (Gemma3ForConditionalGeneration: its language model, "
             "without the vision tower) and phi3 (Phi3ForCausalLM: Phi-3, 3.5 and 4)")


def family_of(config: Any) -> GgufFamily | LanguageModelOf:
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


def _rotary_dims(config: Any) -> int:
    """Rotated dimensions per head: all of them, or Phi-4-mini's partial_rotary_factor share."""
    factor = rope_parameters(config).get("partial_rotary_factor") or getattr(config, "partial_rotary_factor", None)
    return int((factor or 1.0) * head_dim(config))


def _original_context(config: Any) -> int:
    """The context Phi-3 was pretrained with, before long-context rope scaling."""
    return rope_parameters(config).get("original_max_position_embeddings") or config.original_max_position_embeddings


def _longrope_attention_factor(config: Any) -> float:
    """The attention scale HF applies with longrope, as llama.cpp's converter derives it."""
    original = _original_context(config)
    scale = config.max_position_embeddings / original
    return math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 else 1.0


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
