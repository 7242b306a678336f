"""Models: resolve a spec (alias, folder, .gguf, hub id) to a local folder and load its parts."""

from .aliases import ALIASES, DEFAULT_MODEL, ModelNotFound
from .cache import cache_dir
from .resolve import ResolvedModel, load_config, load_tokenizer, resolve_model, saved_quantization, spec_kind

__all__ = ["ALIASES", "DEFAULT_MODEL", "ModelNotFound", "ResolvedModel", "cache_dir", "load_config", "load_tokenizer",
           "resolve_model", "saved_quantization", "spec_kind"]
