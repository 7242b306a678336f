"""K-quant GGUF encoders (Q4_K, Q5_K, Q6_K) and llama.cpp's per-tensor type rules, in numpy.

gguf-py can read K-quant blocks but not write them, and compiling llama.cpp on the user's machine
is what the export exists to avoid. So this ports llama.cpp's reference quantizers
(ggml/src/ggml-quants.c: quantize_row_q4_K_ref, quantize_row_q5_K_ref, quantize_row_q6_K_ref with
make_qkx2_quants and make_qx_quants) step for step in float32, vectorised over every block of a
chunk of rows; only the scale search steps are a Python loop. Same operations in the same order
give the same bytes: the blocks are byte-identical to llama.cpp's ggml_quantize_chunk (see
tests/test_export_kquants.py). Rows are encoded a chunk at a time so the temporaries stay a few MB
whatever the tensor's size.

The type rules port llama_tensor_get_type (src/llama-quant.cpp) for the mixes this package offers,
so a q4_k_m file here holds the same tensor types as one llama-quantize writes.
"""

from __future__ import annotations

import re

import gguf
import numpy as np

QK_K = 256
"""Values per K-quant super-block."""
_CHUNK_VALUES = 1 << 18
"""Values encoded per pass: big enough to amortise numpy's per-call cost, small enough for the cache."""
_GROUP_MAX_EPS = np.float32(1e-15)

_T = gguf.GGMLQuantizationType
FILE_TYPES = {
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "q5_k_m": gguf.LlamaFileType.MOSTLY_Q5_K_M,
    "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K,
}
"""The --quant choices and the file type each one records in the GGUF header."""
_DEFAULT_TYPES = {"q8_0": _T.Q8_0, "q4_k_m": _T.Q4_K, "q5_k_m": _T.Q5_K, "q6_k": _T.Q6_K}
_FALLBACKS = {_T.Q4_K: _T.Q5_0, _T.Q5_K: _T.Q5_1, _T.Q6_K: _T.Q8_0}
"""llama.cpp's tensor_type_fallback: a 32-block type when a row is not a whole number of 256-blocks."""
_KEPT_AS_IS = ("_norm.weight", "ffn_gate_inp.weight", "position_embd", "token_types")
"""Name parts llama.cpp's tensor_allows_quantization keeps unquantized, besides 1-D tensors and
names not ending in "weight" (llama and qwen2 have only the norms; the rest come with other families)."""


def file_type(quant: str) -> gguf.LlamaFileType:
    """The general.file_type llama-quantize records for this --quant choice."""
    return FILE_TYPES[quant]


def tensor_type(gguf_name: str, shape: tuple[int, ...], quant: str, n_layers: int, *,
                tied_embeddings: bool = False) -> gguf.GGMLQuantizationType:
    """The type llama-quantize gives this tensor in a `quant` file: a port of llama_tensor_get_type.

    `shape` is the numpy shape (rows, row length). For f16 every 2-D weight is F16 and q8_0 falls back
    to F16 when a row is not a multiple of 32, as the writer always did. For the K mixes:
    output.weight (and token_embd.weight when `tied_embeddings`, since llama.cpp then uses it as the
    output) is Q6_K; attn_v / attn_qkv / attn_kv_b and ffn_down get Q6_K in the layers
    use_more_bits picks for q4_k_m and q5_k_m; everything else takes the mix's base type. llama.cpp
    counts attn_v and ffn_down tensors in file order; a file written layer by layer makes that count
    the block number, which is what this reads from the name.
    """
    if quant not in FILE_TYPES:
        raise ValueError(f"unknown quant {quant!r}; expected one of {', '.join(FILE_TYPES)}")
    if len(shape) < 2 or any(part in gguf_name for part in _KEPT_AS_IS) or not gguf_name.endswith("weight"):
        return _T.F32
    if quant == "f16":
        return _T.F16
    new_type = _DEFAULT_TYPES[quant]
    row = shape[-1]
    if gguf_name == "output.weight" or (tied_embeddings and gguf_name == "token_embd.weight"):
        if row % QK_K:
            new_type = _T.Q8_0
        elif new_type != _T.Q8_0:
            new_type = _T.Q6_K
    elif quant in ("q4_k_m", "q5_k_m") and _more_bits_tensor(gguf_name, n_layers):
        new_type = _T.Q6_K
    block = gguf.GGML_QUANT_SIZES[new_type][0]
    if row % block:
        new_type = _FALLBACKS.get(new_type, new_type)
        if row % gguf.GGML_QUANT_SIZES[new_type][0]:
            new_type = _T.F16
    return new_type


def _more_bits_tensor(gguf_name: str, n_layers: int) -> bool:
    """attn_v-like and ffn_down tensors in the layers llama.cpp's use_more_bits picks."""
    found = re.match(r"blk\.(\d+)\.(attn_qkv|attn_kv_b|attn_v|ffn_down)\.weight$", gguf_name)
    if found is None:
        return False
    i = int(found.group(1))
    # C's % and Python's differ for negatives, but i - n_layers // 8 >= 0 whenever the last test runs
    return i < n_layers // 8 or i >= 7 * n_layers // 8 or (i - n_layers // 8) % 3 == 2


def quantize(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """`data` (rows, n) as the uint8 array gguf-py's quantize returns: (rows, n / block * type size).

    Q4_K, Q5_K and Q6_K are encoded here (n a multiple of 256), converting to float32 a chunk at a
    time, so an f16 array or a memory map is never copied whole; other types go to gguf.quants.quantize.
    """
    encode = _ENCODERS.get(qtype)
    if encode is None:
        return gguf.quants.quantize(data, qtype)
    values = np.asarray(data)
    n = values.shape[-1]
    if n % QK_K:
        raise ValueError(f"{qtype.name} needs rows that are a multiple of {QK_K} values, not {n}")
    type_size = gguf.GGML_QUANT_SIZES[qtype][1]
    rows = values.reshape(-1, n)
    out = np.empty((rows.shape[0], n // QK_K * type_size), dtype=np.uint8)
    step = max(1, _CHUNK_VALUES // n)
    for start in range(0, rows.shape[0], step):
        blocks = np.ascontiguousarray(rows[start:start + step], dtype=np.float32).reshape(-1, QK_K)
        out[start:start + step] = encode(blocks).reshape(-1, out.shape[1])
    return out.reshape(*values.shape[:-1], out.shape[1])


def _make_qkx2_quants(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float,
                      nstep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """make_qkx2_quants (use_mad false) for every column of x at once: (scale, -min, levels).

    Columns are sub-blocks, so sums run down axis 0 in C's order. Tries nstep + 1 scales around
    nmax / (max - min), each followed by a weighted least-squares fit of scale and min to the
    levels it rounds to, and keeps the lowest weighted squared error.
    """
    f32 = np.float32
    lo = np.minimum(x.min(axis=0), f32(0))
    hi = x.max(axis=0)
    flat = hi == lo
    sum_w = w.sum(axis=0)
    sum_x = (w * x).sum(axis=0)
    iscale = f32(nmax) / np.where(flat, f32(1), hi - lo)
    levels = _levels(iscale, x, lo, 0, nmax)
    scale = f32(1) / iscale
    best = _weighted_error(scale, lo, levels, x, w)
    trial = np.empty_like(x)
    wl = np.empty_like(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(nstep + 1):
            step_scale = (f32(rmin) + f32(rdelta) * f32(i) + f32(nmax)) / (hi - lo)
            _levels(step_scale, x, lo, 0, nmax, out=trial)
            np.multiply(w, trial, out=wl)
            sum_l = wl.sum(axis=0)
            sum_l2 = np.einsum("ij,ij->j", wl, trial)
            sum_xl = np.einsum("ij,ij->j", wl, x)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            positive = this_min > 0
            this_min[positive] = 0
            this_scale = np.where(positive, sum_xl / sum_l2, this_scale)
            error = _weighted_error(this_scale, this_min, trial, x, w, out=wl)
            better = (det > 0) & (error < best) & ~flat
            best = np.where(better, error, best)
            scale = np.where(better, this_scale, scale)
            lo = np.where(better, this_min, lo)
            np.copyto(levels, trial, where=better)
    scale[flat] = 0
    levels[:, flat] = 0
    return scale, -lo, levels


def _levels(iscale: np.ndarray, x: np.ndarray, lo: np.ndarray | None, low: int, high: int,
            out: np.ndarray | None = None) -> np.ndarray:
    """clip(nearest_int(iscale * (x - lo)), low, high) in float32 (lo None: no offset), into `out`."""
    if lo is None:
        out = np.multiply(x, iscale, out=out)
    else:
        out = np.subtract(x, lo, out=out)
        out *= iscale
    np.rint(out, out=out)  # ggml's nearest_int: round half to even, as adding 1.5 * 2**23 does
    return np.clip(out, low, high, out=out)


def _weighted_error(scale: np.ndarray, lo: np.ndarray, levels: np.ndarray, x: np.ndarray,
                    w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sum of w * (scale * level + min - x)**2 down each column, in C's order of operations;
    `out` is scratch space."""
    diff = np.multiply(scale, levels, out=out)
    diff += lo
    diff -= x
    np.square(diff, out=diff)
    return np.einsum("ij,ij->j", w, diff)


def _make_qx_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """make_qx_quants with rmse_type 1 and no importance weights, for every column of x: (scale, levels).

    Symmetric levels -nmax..nmax-1 weighted by x**2; tries 18 scales around -nmax / (signed max)
    and keeps the one whose least-squares scale explains most of x.
    """
    f32 = np.float32
    pick = np.abs(x).argmax(axis=0)
    peak = np.take_along_axis(x, pick[None], axis=0)[0]
    empty = np.abs(peak) < _GROUP_MAX_EPS
    peak[empty] = 1
    w = x * x
    wx = w * x
    trial = np.empty_like(x)
    wl = np.empty_like(x)

    def fit(iscale: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _levels(iscale, x, None, -nmax, nmax - 1, out=out)
        np.multiply(w, out, out=wl)
        return np.einsum("ij,ij->j", wx, out), np.einsum("ij,ij->j", wl, out)

    levels = np.empty_like(x)
    sumlx, suml2 = fit(f32(-nmax) / peak, levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, f32(0))
        best = scale * sumlx
        for i in (*range(-9, 0), *range(1, 10)):
            sumlx, suml2 = fit(-(f32(nmax) + f32(0.1) * f32(i)) / peak, trial)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)
            np.copyto(levels, trial, where=better)
    levels += nmax
    scale[empty] = 0
    levels[:, empty] = 0
    return scale, levels


def _as_uint8(v: np.ndarray) -> np.ndarray:
    """C's conversion of an int to uint8_t (wraps), for the 6-bit scale codes."""
    return (v.astype(np.int32) & 0xFF).astype(np.uint8)


def _scales_mins_levels(blocks: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """The shared part of quantize_row_q4_K_ref / q5_K_ref: fp16 d and dmin, 6-bit scale and min
    codes (8 per block) and the levels 0..nmax of each value (blocks, 8, 32)."""
    f32 = np.float32
    n_blocks = blocks.shape[0]
    x = np.ascontiguousarray(blocks.reshape(-1, 32).T)
    av_x = np.sqrt((x * x).sum(axis=0) / f32(32))
    scales, mins, levels = _make_qkx2_quants(x, av_x + np.abs(x), nmax, rmin, rdelta, nstep)
    scales = scales.reshape(n_blocks, 8)
    mins = mins.reshape(n_blocks, 8)
    max_scale = np.maximum(scales.max(axis=-1), f32(0))
    max_min = np.maximum(mins.max(axis=-1), f32(0))
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, f32(63) / max_scale, f32(0))
        inv_min = np.where(max_min > 0, f32(63) / max_min, f32(0))
    ls = np.minimum(_as_uint8(np.rint(inv_scale[:, None] * scales)), 63)
    lm = np.minimum(_as_uint8(np.rint(inv_min[:, None] * mins)), 63)
    d = (max_scale / f32(63)).astype(np.float16)
    dmin = (max_min / f32(63)).astype(np.float16)
    sub_d = d.astype(f32)[:, None] * ls.astype(f32)
    sub_dm = dmin.astype(f32)[:, None] * lm.astype(f32)
    x = blocks.reshape(n_blocks, 8, 32)
    levels = levels.T.reshape(n_blocks, 8, 32)
    with np.errstate(divide="ignore", invalid="ignore"):
        fresh = np.clip(np.rint((x + sub_dm[..., None]) / sub_d[..., None]), 0, nmax)
    levels = np.where((sub_d != 0)[..., None], fresh, levels).astype(np.uint8)
    scale_bytes = np.concatenate([
        ls[:, :4] | ((ls[:, 4:] >> 4) << 6),
        lm[:, :4] | ((lm[:, 4:] >> 4) << 6),
        (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4),
    ], axis=-1)
    return d, dmin, scale_bytes, levels


def _low_nibbles(levels: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K qs: sub-blocks 2k and 2k+1 share 32 bytes, low and high nibble."""
    pairs = (levels & 0xF).reshape(levels.shape[0], 4, 2, 32)
    return (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(levels.shape[0], 128)


def _header(d: np.ndarray, dmin: np.ndarray, scale_bytes: np.ndarray) -> list[np.ndarray]:
    return [d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), scale_bytes]


def _encode_q4_k(blocks: np.ndarray) -> np.ndarray:
    """quantize_row_q4_K_ref: block_q4_K {d, dmin, scales[12], qs[128]} per 256 values."""
    d, dmin, scale_bytes, levels = _scales_mins_levels(blocks, 15, -1.0, 0.1, 20)
    return np.concatenate([*_header(d, dmin, scale_bytes), _low_nibbles(levels)], axis=-1)


def _encode_q5_k(blocks: np.ndarray) -> np.ndarray:
    """quantize_row_q5_K_ref: block_q5_K {d, dmin, scales[12], qh[32], qs[128]}; bit k of qh[j]
    is the fifth bit of value j in sub-block k."""
    d, dmin, scale_bytes, levels = _scales_mins_levels(blocks, 31, -0.5, 0.1, 15)
    high = (levels >> 4) << np.arange(8, dtype=np.uint8)[:, None]
    qh = np.bitwise_or.reduce(high, axis=1)
    return np.concatenate([*_header(d, dmin, scale_bytes), qh, _low_nibbles(levels)], axis=-1)


def _encode_q6_k(blocks: np.ndarray) -> np.ndarray:
    """quantize_row_q6_K_ref: block_q6_K {ql[128], qh[64], int8 scales[16], d} per 256 values."""
    f32 = np.float32
    n_blocks = blocks.shape[0]
    scales, levels = _make_qx_quants(np.ascontiguousarray(blocks.reshape(-1, 16).T), 32)
    scales = scales.reshape(n_blocks, 16)
    pick = np.abs(scales).argmax(axis=-1)[:, None]
    max_scale = np.take_along_axis(scales, pick, axis=-1)[:, 0]
    empty = np.abs(max_scale) < _GROUP_MAX_EPS
    with np.errstate(divide="ignore"):
        iscale = np.where(empty, f32(0), f32(-128) / max_scale)
        d = np.where(empty, f32(0), f32(1) / iscale).astype(np.float16)
    codes = np.minimum(np.rint(iscale[:, None] * scales), 127).astype(np.int8)
    sub_d = d.astype(f32)[:, None] * codes.astype(f32)
    x = blocks.reshape(n_blocks, 16, 16)
    levels = levels.T.reshape(n_blocks, 16, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        fresh = np.clip(np.rint(x / sub_d[..., None]), -32, 31) + 32
    levels = np.where((sub_d != 0)[..., None], fresh, levels).astype(np.uint8)
    levels[empty] = 0
    quarters = levels.reshape(n_blocks, 2, 4, 32)
    low = quarters & 0xF
    ql = np.stack([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], axis=2)
    qh = np.bitwise_or.reduce((quarters >> 4) << (2 * np.arange(4, dtype=np.uint8))[:, None], axis=2)
    return np.concatenate([ql.reshape(n_blocks, 128), qh.reshape(n_blocks, 64),
                           codes.view(np.uint8), d.view(np.uint8).reshape(-1, 2)], axis=-1)


_ENCODERS = {_T.Q4_K: _encode_q4_k, _T.Q5_K: _encode_q5_k, _T.Q6_K: _encode_q6_k}
