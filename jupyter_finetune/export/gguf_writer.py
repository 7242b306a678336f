"""A merged model as one GGUF file for llama.cpp-family runtimes (llama.cpp, Ollama, LM Studio).

Follows llama.cpp's convert_hf_to_gguf.py: the family (gguf_families.py) names each tensor and
writes its hyperparameters; here, norms and biases are kept in f32 and 2-D weights written in f16
or Q8_0 (f16 where a row is not a whole number of 32-value blocks, as llama.cpp does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .gguf_families import family_of
from .gguf_vocab import GgufVocab
from .result import QUANTS, ExportError

_Q8_BLOCK = 32


def write_gguf(model: Any, vocab: GgufVocab, path: Path, *, quant: str, name: str) -> None:
    """Write ``model`` (merged, any float dtype) and its vocabulary to ``path``."""
    import gguf

    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: use one of {', '.join(QUANTS)}")
    config = model.config
    family = family_of(config)
    writer = gguf.GGUFWriter(path, family.arch)
    writer.add_type("model")
    writer.add_name(name)
    family.write_hyperparameters(writer, config)
    _write_file_type(writer, quant)
    vocab.write(writer)
    for hf_name, tensor in model.state_dict().items():
        gguf_name = family.gguf_name(hf_name, config)
        if gguf_name is not None:
            _add_tensor(writer, gguf_name, family.transform(hf_name, tensor.detach().float().numpy(), config), quant)
    for gguf_name, data in family.extra_tensors(config):
        writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_file_type(writer: Any, quant: str) -> None:
    import gguf

    if quant == "q8_0":
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    else:
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


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
