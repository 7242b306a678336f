"""A GGUF file converted once to a safetensors folder that transformers, peft and TRL all load."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """$JUPYTER_FINETUNE_CACHE, else $XDG_CACHE_HOME/jupyter_finetune, else ~/.cache/jupyter_finetune."""
    if os.environ.get("JUPYTER_FINETUNE_CACHE"):
        return Path(os.environ["JUPYTER_FINETUNE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jupyter_finetune"


def converted_folder(gguf: Path) -> Path:
    """Where the conversion of this exact file lives: a changed file gets a new folder."""
    stat = gguf.stat()
    key = hashlib.blake2b(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=5).hexdigest()
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantize ``gguf`` to fp32 safetensors with its tokenizer, once; later calls return the folder."""
    target = converted_folder(gguf)
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, __version__ as tf_version

    print(f"Converting {gguf.name} once to {target} (about 30 s); later uses load it in about a second.",
          file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # GGUF loading leaves a quantization config that makes save_pretrained and Trainer refuse the model.
        del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "jupyter_finetune.json").write_text(json.dumps({
            "source": str(gguf), "size": gguf.stat().st_size, "transformers": tf_version}, indent=2))
        try:
            tmp.rename(target)
        except OSError:  # another kernel finished first: keep its folder
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
