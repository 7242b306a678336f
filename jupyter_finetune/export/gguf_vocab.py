"""The tokenizer as GGUF metadata, laid out the way llama.cpp's convert_hf_to_gguf.py writes it.

Two vocabularies exist in the llama/qwen2/mistral families: byte-level BPE (``gpt2``: SmolLM2,
Llama 3, Qwen2, Mistral Nemo) and sentencepiece-style BPE with byte fallback (``llama``: Llama 2,
Mistral 7B). A byte-level BPE also needs the name of its pre-tokenizer (how text is split before
merging), which llama.cpp knows by name only; we recognise the ones these families use from
``tokenizer.json`` itself.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .result import ExportError

# Token types (gguf.TokenType), named here so that this module imports without gguf/numpy.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6

# tokenizer.json split patterns, and llama.cpp's name for the pre-tokenizer that splits the same way.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLIT_PRE_TOKENIZERS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}
KNOWN_PRE_TOKENIZERS = ("gpt-2 (ByteLevel)", "smollm (Digits + ByteLevel)", "llama-bpe (Llama 3 split)",
                        "qwen2 (Qwen2 split)")
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass(frozen=True)
class GgufVocab:
    model: str
    """llama.cpp's tokenizer model: gpt2 (byte-level BPE) or llama (sentencepiece-style BPE)."""
    pre: str | None
    """llama.cpp's pre-tokenizer name (gpt2 vocabularies only)."""
    tokens: list[str]
    types: list[int]
    scores: list[float] | None
    merges: list[str]
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None
    chat_template: str

    def write(self, writer: Any) -> None:
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        if self.merges:
            writer.add_token_merges(self.merges)
        for kind, token_id in self.special_ids.items():
            getattr(writer, f"add_{kind}_token_id")(token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        writer.add_chat_template(self.chat_template)


def gguf_vocab(tokenizer: Any, vocab_size: int, known_pre: str | None = None) -> GgufVocab:
    """The vocabulary padded to the model's ``vocab_size``; ``known_pre`` wins over detection.

    ``known_pre`` is the pre-tokenizer a GGUF the base model came from already names.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    bpe = spec.get("model", {})
    if bpe.get("type") != "BPE":
        raise ExportError(f"GGUF export needs a BPE tokenizer; this one is {bpe.get('type')!r}. Export --to merged "
                          "and convert it with llama.cpp's convert_hf_to_gguf.py")
    sentencepiece = bool(bpe.get("byte_fallback"))
    merges = [_merge_text(m) for m in bpe.get("merges", [])]
    tokens, types = _tokens(tokenizer, vocab_size, sentencepiece)
    ids = {kind: getattr(tokenizer, f"{kind}_token_id") for kind in ("bos", "eos", "unk", "pad")}
    encoded = tokenizer("a")["input_ids"]
    chat_template = tokenizer.chat_template
    if isinstance(chat_template, dict):  # several named templates: llama.cpp's default is the one called so
        chat_template = chat_template.get("default") or next(iter(chat_template.values()))
    return GgufVocab(
        model="llama" if sentencepiece else "gpt2",
        pre=None if sentencepiece else (known_pre or pre_tokenizer_name(spec.get("pre_tokenizer"))),
        tokens=tokens, types=types, scores=_merge_scores(tokens, merges) if sentencepiece else None, merges=merges,
        special_ids={kind: i for kind, i in ids.items() if i is not None},
        add_bos=ids["bos"] is not None and encoded[:1] == [ids["bos"]],
        add_eos=ids["eos"] is not None and len(encoded) > 1 and encoded[-1] == ids["eos"],
        add_space_prefix=(tokenizer.convert_ids_to_tokens(tokenizer("a", add_special_tokens=False)["input_ids"])[0]
                          .startswith("\u2581")) if sentencepiece else None,
        chat_template=chat_template,
    )


def source_pre_tokenizer(path: Path | None) -> str | None:
    """The pre-tokenizer a GGUF file names (the one a base model was converted from), if any.

    Reads the metadata up to that key only: gguf.GGUFReader parses every token string first,
    which takes seconds for a 50k vocabulary.
    """
    if path is None:
        return None
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            return None
        _version, _tensors, count = struct.unpack("<IQQ", f.read(20))
        for _ in range(count):
            key = f.read(struct.unpack("<Q", f.read(8))[0]).decode("utf-8")
            kind = struct.unpack("<I", f.read(4))[0]
            if key == "tokenizer.ggml.pre" and kind == _GGUF_STRING:
                return _read_string(f)
            _skip_value(f, kind)
    return None


_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _read_string(f: BinaryIO) -> str:
    return f.read(struct.unpack("<Q", f.read(8))[0]).decode("utf-8")


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind == _GGUF_STRING:
        f.seek(struct.unpack("<Q", f.read(8))[0], 1)
    elif kind == _GGUF_ARRAY:
        item, n = struct.unpack("<IQ", f.read(12))
        if item in _GGUF_SIZES:
            f.seek(n * _GGUF_SIZES[item], 1)
        else:
            for _ in range(n):
                _skip_value(f, item)
    else:
        f.seek(_GGUF_SIZES[kind], 1)


def pre_tokenizer_name(pre: dict[str, Any] | None) -> str:
    """llama.cpp's name for a byte-level pre-tokenizer, read from its tokenizer.json structure."""
    steps = (pre or {}).get("pretokenizers", [pre]) if (pre or {}).get("type") == "Sequence" else [pre or {}]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        name = SPLIT_PRE_TOKENIZERS.get((steps[0].get("pattern") or {}).get("Regex"))
        if name:
            return name
    raise ExportError(f"this tokenizer's pre-tokenizer ({' + '.join(map(str, kinds))}) is not one llama.cpp knows "
                      f"by a name we can tell; supported: {', '.join(KNOWN_PRE_TOKENIZERS)}. Export --to merged and "
                      "convert it with llama.cpp's convert_hf_to_gguf.py, which identifies more by hashing")


def _tokens(tokenizer: Any, vocab_size: int, sentencepiece: bool) -> tuple[list[str], list[int]]:
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise ExportError(f"the tokenizer has ids up to {max(by_id)} but the model only {vocab_size} embeddings; "
                          "the run's tokenizer and model do not match")
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(USER_DEFINED)
        elif sentencepiece and i == tokenizer.unk_token_id:
            tokens.append(by_id[i])
            types.append(UNKNOWN)
        elif i in added:
            tokens.append(added[i].content)
            types.append(CONTROL if added[i].special else USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(BYTE if sentencepiece and _BYTE_TOKEN.fullmatch(by_id[i]) else NORMAL)
    return tokens, types


def _merge_scores(tokens: list[str], merges: list[str]) -> list[float]:
    """Sentencepiece scores that reproduce BPE: a token made by an earlier merge scores higher.

    llama.cpp's sentencepiece tokenizer repeatedly joins the adjacent pair whose joined text is the
    best-scoring token; scoring each token by minus the rank of the merge that makes it gives the
    same order as the merge list. Tokens no merge makes (characters, bytes, specials) score 0.
    """
    rank = {}
    for r, merge in enumerate(merges):
        rank.setdefault(merge.replace(" ", ""), r)
    return [-float(rank[t]) if t in rank else 0.0 for t in tokens]


def _merge_text(merge: str | list[str]) -> str:
    """One merge as llama.cpp stores it: "left right", a space inside a part written as U+0120 (gguf's SpecialVocab)."""
    if isinstance(merge, str):
        return merge
    return " ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in merge)
