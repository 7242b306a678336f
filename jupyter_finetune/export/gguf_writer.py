"""A merged model as one GGUF file for llama.cpp-family runtimes (llama.cpp, Ollama, LM Studio).

Follows llama.cpp's convert_hf_to_gguf.py: the family (gguf_families.py) names each tensor and
writes its hyperparameters; kquants.py picks each tensor's type the way llama-quantize does and
encodes it. Written in two passes over the merged tensor stream, never holding the model: the
tensor infos come from the checkpoint's headers (names, shapes, types and so byte sizes are known
before any value is), then each tensor is merged, transformed, quantized and written a block of
rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import kquants
from .gguf_families import GgufFamily, family_of
from .gguf_vocab import GgufVocab
from .checkpoint import StoredTensor
from .merge import MergedWeights
from .result import QUANTS, ExportError


@dataclass(frozen=True)
class _Planned:
    """One tensor of the file: its GGUF name, type and size, and where its values come from."""

    name: str
    shape: tuple[int, ...]
    qtype: Any
    nbytes: int
    source: StoredTensor | None
    """The checkpoint tensor it is made from; None for an extra tensor the family computes (held in ``data``)."""
    data: Any = None


def write_gguf(weights: MergedWeights, vocab: GgufVocab, path: Path, *, quant: str, name: str) -> None:
    """Write the merged ``weights`` and the vocabulary to ``path``."""
    import gguf
    import numpy as np

    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: use one of {', '.join(QUANTS)}")
    config = weights.config
    family = family_of(config)
    plan = list(_plan(weights, family, quant))
    writer = gguf.GGUFWriter(path, family.arch)
    writer.add_type("model")
    writer.add_name(name)
    family.write_hyperparameters(writer, config)
    writer.add_file_type(kquants.file_type(quant))
    if quant != "f16":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    vocab.write(writer)
    for tensor in plan:  # float32 with raw_dtype: the shape is in values, whatever the type's block size
        writer.add_tensor_info(tensor.name, tensor.shape, np.float32, tensor.nbytes, raw_dtype=tensor.qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    (out,) = writer.fout  # gguf's write_tensor_data takes whole tensors: blocks go to its file, aligned as it aligns
    for tensor in plan:
        blocks = _values(weights, tensor.source, family) if tensor.source else iter([tensor.data])
        writer.write_padding(out, out.tell())
        written = 0
        for block in blocks:
            encoded = kquants.quantize(block.reshape(-1, tensor.shape[-1]), tensor.qtype)
            encoded.tofile(out)
            written += encoded.nbytes
        if written != tensor.nbytes:
            raise AssertionError(f"{tensor.name}: wrote {written} bytes, planned {tensor.nbytes}")
        writer.write_padding(out, written)
    writer.close()


def _plan(weights: MergedWeights, family: GgufFamily, quant: str) -> Iterator[_Planned]:
    """Every tensor the file holds, in file order, from the checkpoint headers and the family's extra tensors."""
    import numpy as np

    config = weights.config
    text = getattr(config, "text_config", None) or config  # a multimodal checkpoint: its language model's
    layers = text.num_hidden_layers
    tied = bool(getattr(config, "tie_word_embeddings", None) or getattr(text, "tie_word_embeddings", False))  # token_embd is then llama.cpp's output too
    for tensor in weights.tensors():
        gguf_name = family.gguf_name(tensor.name, config)
        if gguf_name is not None:
            qtype = kquants.tensor_type(gguf_name, tensor.shape, quant, layers, tied_embeddings=tied)
            yield _Planned(gguf_name, tensor.shape, qtype, _nbytes(tensor.shape, qtype), tensor)
    for gguf_name, data in family.extra_tensors(config):
        data = np.asarray(data, dtype=np.float32)
        qtype = kquants.tensor_type(gguf_name, data.shape, quant, layers, tied_embeddings=tied)
        yield _Planned(gguf_name, data.shape, qtype, _nbytes(data.shape, qtype), None, data)


def _nbytes(shape: tuple[int, ...], qtype: Any) -> int:
    import gguf

    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    values = 1
    for size in shape:
        values *= size
    return values // block * block_bytes


def _values(weights: MergedWeights, tensor: StoredTensor, family: GgufFamily) -> Iterator[Any]:
    """The merged tensor as llama.cpp reads it, in float32 numpy blocks of rows; whole, where the family's
    transform mixes rows (llama's q/k permutation)."""
    import torch

    config = weights.config
    if family.mixes_rows(tensor.name):
        yield family.transform(tensor.name, torch.cat(list(weights.blocks(tensor))).numpy(), config)
    else:
        for block in weights.blocks(tensor):
            yield family.transform(tensor.name, block.numpy(), config)
