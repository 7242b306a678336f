"""A GGUF file converted once to a safetensors folder that transformers, peft and TRL all load."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

MARKER = "jupyter_finetune.json"
log = logging.getLogger(__name__)


CONVERSION = 2  # what a converted folder holds: 2 drops tokens past the embeddings (earlier ones are redone)


def cache_dir() -> Path:
    """$JUPYTER_FINETUNE_CACHE, else $XDG_CACHE_HOME/jupyter_finetune, else ~/.cache/jupyter_finetune."""
    if os.environ.get("JUPYTER_FINETUNE_CACHE"):
        return Path(os.environ["JUPYTER_FINETUNE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "jupyter_finetune"


def converted_folder(gguf: Path) -> Path:
    """Where the conversion of this exact file lives: a replaced or rewritten file gets a new folder.

    Keyed on name, size and mtime rather than content so that a later lookup costs one stat(), and on
    CONVERSION, so that a folder an earlier version wrote is redone.
    """
    stat = gguf.stat()
    key = hashlib.blake2b(f"{gguf.name}:{stat.st_size}:{stat.st_mtime_ns}:{CONVERSION}".encode(),
                          digest_size=5).hexdigest()
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantize ``gguf`` to fp32 safetensors with its tokenizer, once; later calls return the folder."""
    target = converted_folder(gguf)
    if target.is_dir():
        return target
    log.info("Converting %s once to %s (about 30 s); later uses load it in about a second.", gguf.stem, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_converted(gguf, tmp)
        return publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, target: Path) -> Path:
    """Rename a finished folder into place in one step; if another kernel got there first, keep theirs.

    Readers therefore see either no folder or a complete one, never a half-written one.
    """
    try:
        tmp.rename(target)
    except OSError:
        if not target.is_dir():
            raise
    return target


def _write_converted(gguf: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # GGUF loading leaves a quantization config that makes save_pretrained and Trainer refuse the model
    # (transformers 5.24 does; 5.9 and 5.17 leave none).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    # GGUF carries no tokenizer length limit; without one, truncation to the context window never happens.
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    drop_tokens_past_embeddings(folder, model.config.vocab_size)
    stat = gguf.stat()
    record = {"source": str(gguf.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
              "versions": {name: _version(name) for name in ("jupyter-finetune", "transformers", "gguf", "torch")}}
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def drop_tokens_past_embeddings(folder: Path, vocab_size: int) -> None:
    """Remove added tokens whose ids the model has no embedding for, from a saved tokenizer.

    transformers 5.0's GGUF reader (Kaggle's) builds a llama-architecture tokenizer as CodeLlama's,
    which adds its five fill-in-the-middle tokens past the vocabulary: SmolLM2's 49152 embeddings then
    meet ids up to 49156. The model never saw them, so they go, and the class that re-adds them too.
    """
    tokenizer_file, config_file = folder / "tokenizer.json", folder / "tokenizer_config.json"
    data = json.loads(tokenizer_file.read_text())
    dropped = {t["content"] for t in data.get("added_tokens", []) if t["id"] >= vocab_size}
    if not dropped:
        return
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in dropped]
    tokenizer_file.write_text(json.dumps(data, ensure_ascii=False))
    config = json.loads(config_file.read_text())
    config["added_tokens_decoder"] = {i: t for i, t in config.get("added_tokens_decoder", {}).items()
                                      if int(i) < vocab_size}
    config = {k: v for k, v in config.items() if not (isinstance(v, str) and v in dropped)}
    for key in ("extra_special_tokens", "additional_special_tokens"):
        if isinstance(config.get(key), list):
            config[key] = [t for t in config[key] if t not in dropped]
    if config.get("tokenizer_class") == "CodeLlamaTokenizer":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None
