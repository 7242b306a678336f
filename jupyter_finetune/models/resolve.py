"""Turn what a user types after --model into a local folder transformers can load."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from .aliases import ALIASES, ModelNotFound
from .cache import convert_gguf

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
_HUB_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja"]
"""What loading and training read from a hub repository: not its .bin, .gguf or .pth duplicates."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    """What the user typed."""
    path: Path
    """An absolute local folder with config.json and tokenizer files."""
    kind: Literal["alias", "folder", "gguf", "hub"]
    display_name: str


def resolve_model(spec: str) -> ResolvedModel:
    """An alias, a local folder, a .gguf file, or a hub id (downloaded once unless HF_HUB_OFFLINE is set)."""
    kind = spec_kind(spec)
    if kind == "alias":
        alias = ALIASES[spec]
        return ResolvedModel(spec, convert_gguf(alias.gguf_path()), "alias", alias.display_name)
    if kind == "hub":
        return ResolvedModel(spec, _checked_folder(_from_hub_cache(spec)), "hub", spec)
    path = Path(spec).expanduser().resolve()
    if kind == "gguf":
        if not path.is_file():
            raise ModelNotFound(f"{path}: no such GGUF file")
        return ResolvedModel(spec, convert_gguf(path), "gguf", path.stem)
    if path.is_dir():
        return ResolvedModel(spec, _checked_folder(path), "folder", path.name)
    if path.is_file():
        raise ModelNotFound(f"{path} is a file: pass the folder that holds config.json, or a .gguf file")
    close = difflib.get_close_matches(spec, ALIASES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelNotFound(f"unknown model {spec!r}: {hint}use an alias ({', '.join(ALIASES)}), a local folder, "
                        "a .gguf file, or a hub id (owner/name)")


def spec_kind(spec: str) -> Literal["alias", "folder", "gguf", "hub"]:
    """What ``spec`` names, without loading or downloading anything: how ``resolve_model`` takes it, and where
    a model comes from on another machine (export.script). A path that exists here is never a hub id."""
    if spec in ALIASES:
        return "alias"
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" and not path.is_dir():
        return "gguf"
    return "folder" if path.exists() or not _HUB_ID.fullmatch(spec) else "hub"


def _checked_folder(folder: Path) -> Path:
    """Refuse a folder that transformers could not load, naming every missing piece at once."""
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        missing.append(f"tokenizer files (one of {', '.join(_TOKENIZER_FILES)})")
    if missing:
        raise ModelNotFound(f"{folder} has no {' and no '.join(missing)}: give a folder where both the model "
                            "and its tokenizer were saved with save_pretrained()")
    return folder


def _from_hub_cache(repo_id: str) -> Path:
    """The cached snapshot; otherwise a download of the files training needs (Colab and Kaggle have internet),
    unless the hub is switched off, as in tests and on machines without internet."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    fetch = f"On a machine with internet run: hf download {repo_id} (older huggingface_hub: " \
            f"huggingface-cli download {repo_id}) and copy the cache here, or pass a local folder"
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except HFValidationError as e:
        raise ModelNotFound(f"{repo_id!r} is neither a local folder nor a valid hub id: {e}") from None
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise ModelNotFound(f"{repo_id!r} is not a local folder and not in the local Hugging Face cache, and "
                                f"HF_HUB_OFFLINE is set, so nothing is downloaded. {fetch}") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except Exception as e:  # connection, authentication or missing repository: all end the same way for the user
        raise ModelNotFound(f"{repo_id!r} is not a local folder and could not be downloaded from "
                            f"{constants.ENDPOINT} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                            f"Check the name and the connection (gated models need `hf auth login`). {fetch}") from None


@lru_cache(maxsize=8)
def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@lru_cache(maxsize=8)
def _config(path: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


def load_tokenizer(spec: str) -> Any:
    """The model's fast tokenizer, loaded once per folder per kernel."""
    return _tokenizer(resolve_model(spec).path)


def load_config(spec: str) -> Any:
    """The model's ``AutoConfig``, loaded once per folder per kernel."""
    return _config(resolve_model(spec).path)


def saved_quantization(config: Any) -> str | None:
    """"4bit" or "8bit" for a model saved with bitsandbytes weights (unsloth's ``-bnb-4bit`` uploads)."""
    saved = getattr(config, "quantization_config", None)
    saved = saved if isinstance(saved, dict) else getattr(saved, "to_dict", dict)()
    if saved.get("quant_method") != "bitsandbytes":
        return None
    return "4bit" if saved.get("load_in_4bit") else "8bit" if saved.get("load_in_8bit") else None
