"""Turn what a user types after --model into a local folder transformers can load."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from .aliases import ALIASES, ModelNotFound, packaged_gguf
from .cache import convert_gguf

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: Path
    kind: Literal["alias", "folder", "gguf", "hub"]
    display_name: str


def resolve_model(spec: str) -> ResolvedModel:
    """An alias, a local folder, a .gguf file, or a hub id already in the local HF cache."""
    if spec in ALIASES:
        alias = ALIASES[spec]
        return ResolvedModel(spec, convert_gguf(packaged_gguf(alias)), "alias", alias.display_name)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"{path} has no config.json: give a folder saved with save_pretrained()")
        return ResolvedModel(spec, path, "folder", path.name)
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelNotFound(f"{path}: no such GGUF file")
        return ResolvedModel(spec, convert_gguf(path), "gguf", path.stem)
    if _HUB_ID.match(spec):
        return ResolvedModel(spec, _from_hub_cache(spec), "hub", spec)
    close = difflib.get_close_matches(spec, ALIASES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelNotFound(f"unknown model {spec!r}: {hint}use an alias ({', '.join(ALIASES)}), a local folder, "
                        "a .gguf file, or a hub id (owner/name) already downloaded")


def _from_hub_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise ModelNotFound(
            f"{repo_id} is not in the local Hugging Face cache and nothing is downloaded at run time. "
            f"On a machine with internet run: huggingface-cli download {repo_id}, or pass a local folder"
        ) from None


@lru_cache(maxsize=8)
def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@lru_cache(maxsize=8)
def _config(path: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


def load_tokenizer(spec: str) -> Any:
    return _tokenizer(resolve_model(spec).path)


def load_config(spec: str) -> Any:
    return _config(resolve_model(spec).path)
