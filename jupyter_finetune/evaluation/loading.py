"""A run's model for evaluation and chat, loaded through the run's own backend, device and precision.

The backend is chosen from the run's recorded settings by the same ``select_backend`` that chose it
for training (engine/backends.py), so a QLoRA run is evaluated on its 4-bit base on the GPU, and a
CPU run in fp32. One copy in memory serves both systems (inside ``model.disable_adapter()`` it is the
base model), and the kernel keeps one loaded run: ``%ft_eval`` then ``%ft_chat`` of the same run
load once; another run, or training, frees it first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engine.backends import LoadDescription, select_inference_backend
from ..engine.config import TrainConfig
from ..models.oom import free_memory
from ..models.quiet import library_noise_off
from ..models.tokenizer import training_tokenizer
from ..runs import Run


@dataclass(frozen=True)
class LoadedRun:
    """A run's model (base + adapter, eval mode), the tokenizer as training used it, and how it was loaded."""

    model: Any
    tokenizer: Any
    description: LoadDescription
    key: tuple[str, ...]


def adapter_fingerprint(adapter_dir: Path) -> str:
    """Changes when the adapter is retrained (resumed, overwritten)."""
    weights = sorted(adapter_dir.glob("adapter_model.*"))
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in weights)


class ModelCache:
    """The kernel's one loaded run model, kept between evaluations and chats until memory is needed.

    ``loads`` counts real loads, so reuse can be seen from outside.
    """

    def __init__(self) -> None:
        self.current: LoadedRun | None = None
        self.loads = 0

    def get(self, run: Run) -> LoadedRun:
        """The run's model: the one already loaded when run, adapter and load settings match, else a new
        load (after freeing the old one: two models need not fit at once)."""
        from ..models import resolve_model

        settings = run.settings()
        backend, config, note = select_inference_backend(TrainConfig.from_dict(settings.train), settings.backend_name)
        key = (str(run.path.resolve()), adapter_fingerprint(run.trained_adapter()), backend.name, config.quant)
        if self.current is not None and self.current.key == key:
            return self.current
        self.release()
        model_path = resolve_model(settings.model).path
        with library_noise_off():
            tokenizer = training_tokenizer(model_path, run.adapter_dir)
            loaded = backend.load_for_inference(model_path, run.adapter_dir, config)
        self.loads += 1
        self.current = LoadedRun(loaded.model, tokenizer, replace(loaded.description, note=note), key)
        return self.current

    def release(self) -> None:
        """Drop the loaded model and give its memory back (host and GPU)."""
        if self.current is None:
            return
        self.current = None
        free_memory()


MODELS = ModelCache()
"""The current kernel's loaded run model (kernel state, like the registry of training jobs)."""


def load_run(run: Run) -> LoadedRun:
    """The run's model, loaded through its own backend or reused from the kernel's cache."""
    return MODELS.get(run)


def release_models() -> None:
    """Free the cached model: training is about to need the memory."""
    MODELS.release()
