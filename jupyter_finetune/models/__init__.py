"""Models: resolve a spec (alias, folder, .gguf, cached hub id) to a local folder and load its parts."""

from .aliases import ALIASES, ModelNotFound
from .cache import cache_dir
from .resolve import ResolvedModel, load_config, load_tokenizer, resolve_model

__all__ = ["ALIASES", "ModelNotFound", "ResolvedModel", "cache_dir", "load_config", "load_tokenizer",
           "resolve_model"]
