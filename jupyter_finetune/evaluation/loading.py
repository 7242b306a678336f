"""A run's model for evaluation and chat, loaded through the run's own backend, device and precision.

The backend is chosen from the run's recorded settings by the same ``select_backend`` that chose it
for training (engine/backends.py), so a QLoRA run is evaluated on its 4-bit base on the GPU, and a
CPU run in fp32. One copy in memory serves both systems (inside ``model.disable_adapter()`` it is the
base model), and the kernel keeps one loaded run: ``%ft_eval`` then ``%ft_chat`` of the same run
load once; another run, or training, frees it first. A run that started from another run's adapter
(``--from``) has that adapter loaded into the same model beside its own when evaluated, and
``switched_to`` picks which one answers: still one copy of the base weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

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


START_ADAPTER = "start"
"""The name the adapter a run started from is loaded under, beside the run's own."""


def load_run(run: Run, *, start: bool = False) -> LoadedRun:
    """The run's model, loaded through its own backend or reused from the kernel's cache; with ``start``,
    the adapter the run started from (``Run.start_adapter``) loaded into it too, as START_ADAPTER."""
    loaded = MODELS.get(run)
    source = run.start_adapter() if start else None
    if source is not None and START_ADAPTER not in loaded.model.peft_config:
        with library_noise_off():
            loaded.model.load_adapter(str(source), adapter_name=START_ADAPTER)
        loaded.model.eval()
    return loaded


@contextlib.contextmanager
def switched_to(model: Any, adapter: str | None) -> Iterator[None]:
    """``model`` answering with its adapter named ``adapter`` (None: every adapter off, the base model); the
    adapter active before is active again after."""
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    active = model.active_adapter
    model.set_adapter(adapter)
    try:
        yield
    finally:
        model.set_adapter(active)


def release_models() -> None:
    """Free the cached model: training is about to need the memory."""
    MODELS.release()
