"""A merged model as one GGUF file for llama.cpp-family runtimes (llama.cpp, Ollama, LM Studio).

Follows llama.cpp's convert_hf_to_gguf.py for the llama, mistral and qwen2 families: the same
tensor names (gguf.TensorNameMap), the same hyperparameter keys, q_proj/k_proj rows permuted for
the llama architecture (llama.cpp rotates interleaved pairs; Hugging Face rotates halves), norms
and biases kept in f32, and 2-D weights in f16 or Q8_0 (f16 where a row is not a whole number of
32-value blocks, as llama.cpp does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .gguf_vocab import GgufVocab
from .result import QUANTS, ExportError

ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
"""Hugging Face model_type -> GGUF architecture (llama.cpp runs Mistral as llama)."""
SUPPORTED = "llama (LlamaForCausalLM), mistral (MistralForCausalLM) and qwen2 (Qwen2ForCausalLM)"
_ROPE_TYPES = {"default": ("llama", "qwen2"), "llama3": ("llama",)}
_Q8_BLOCK = 32


def check_supported(config: Any) -> str:
    """The GGUF architecture for this config, or an error naming the supported ones (before weights load)."""
    model_type = getattr(config, "model_type", None)
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise ExportError(f"GGUF export supports the {SUPPORTED} families; this model is {model_type!r} "
                          f"({', '.join(getattr(config, 'architectures', None) or ['unknown class'])}). "
                          "Export --to merged and convert it with llama.cpp's convert_hf_to_gguf.py")
    rope_type = rope_parameters(config)["rope_type"]
    if arch not in _ROPE_TYPES.get(rope_type, ()):
        supported = ", ".join(f"{rope} ({'/'.join(archs)})" for rope, archs in _ROPE_TYPES.items())
        raise ExportError(f"GGUF export does not handle {rope_type!r} rope scaling for {model_type}; supported: "
                          f"{supported}. Export --to merged and convert it with llama.cpp's convert_hf_to_gguf.py")
    return arch


def rope_parameters(config: Any) -> dict[str, Any]:
    """transformers 5 ``rope_parameters`` or 4.x ``rope_theta`` + ``rope_scaling``, as one dict."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    return params


def write_gguf(model: Any, vocab: GgufVocab, path: Path, *, quant: str, name: str) -> None:
    """Write ``model`` (merged, any float dtype) and its vocabulary to ``path``."""
    import gguf

    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: use one of {', '.join(QUANTS)}")
    config = model.config
    arch = check_supported(config)
    writer = gguf.GGUFWriter(path, arch)
    _write_hyperparameters(writer, config, name, quant)
    vocab.write(writer)
    _write_tensors(writer, model, arch, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_hyperparameters(writer: Any, config: Any, name: str, quant: str) -> None:
    import gguf

    n_head = config.num_attention_heads
    head_dim = _head_dim(config)
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
    writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if quant == "q8_0":
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    else:
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


def _write_tensors(writer: Any, model: Any, arch: str, quant: str) -> None:
    import gguf

    config = model.config
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.QWEN2,
                                     config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd when there is no output.weight
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"tensor {hf_name!r} has no GGUF name in the {arch} architecture; this model has "
                              "parts llama.cpp's converter would need to handle. Export --to merged instead")
        data = tensor.detach().float()
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, n_head)
        elif arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, n_kv)
        _add_tensor(writer, gguf_name, data.numpy(), quant)
    if rope_parameters(config)["rope_type"] == "llama3":
        writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", _llama3_rope_factors(config))


def _add_tensor(writer: Any, name: str, data: Any, quant: str) -> None:
    import gguf
    import numpy as np

    if data.ndim == 1:
        writer.add_tensor(name, data.astype(np.float32))
    elif quant == "q8_0" and data.shape[-1] % _Q8_BLOCK == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data.astype(np.float32), q8), raw_dtype=q8)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def _permute(weights: Any, n_head: int) -> Any:
    """Rows of each head from [first halves, second halves] to interleaved pairs, as llama.cpp expects."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _llama3_rope_factors(config: Any) -> Any:
    """Per-frequency divisors for Llama 3.1+ rope scaling, as llama.cpp's converter computes them."""
    import numpy as np

    rope = rope_parameters(config)
    dim = _head_dim(config)
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
