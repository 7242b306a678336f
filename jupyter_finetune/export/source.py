"""What an export reads from a run: its settings, its base model, its adapter and its data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..models import ResolvedModel, resolve_model
from ..models.cache import MARKER
from ..models.tokenizer import training_tokenizer
from ..runs import Run, RunSettings
from .result import ExportError


@dataclass(frozen=True)
class RunSource:
    """A finished run's adapter and the base model it was trained on."""

    run: Run
    settings: RunSettings
    base: ResolvedModel

    @classmethod
    def of(cls, run: Run) -> "RunSource":
        """Refuses a damaged run, or one that has no adapter yet, before any weights load."""
        run.check()
        status = run.status().get("status")
        if status == "running":
            raise ExportError(f"run {run.name!r} is still training; export it after it finishes (or %ft_stop it)")
        run.trained_adapter()
        settings = run.settings()
        return cls(run, settings, resolve_model(settings.model))

    @property
    def base_path(self) -> Path:
        return self.base.path

    @property
    def quantized_training(self) -> bool:
        """True when training saw 4-bit or 8-bit base weights (QLoRA)."""
        return self.settings.quant != "none"

    @cached_property
    def base_config(self) -> Any:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.base_path)

    @cached_property
    def end_token_ids(self) -> tuple[int, ...]:
        """The token ids generation ends on (generation_config.json's eos_token_id, one id or a list), if saved."""
        from transformers import GenerationConfig

        try:
            ids = GenerationConfig.from_pretrained(self.base_path).eos_token_id
        except OSError:
            return ()
        return tuple(ids) if isinstance(ids, list) else (() if ids is None else (ids,))

    def tokenizer(self) -> Any:
        """The tokenizer training used (saved next to the adapter), with the chat template training applied."""
        return training_tokenizer(self.base_path, self.run.adapter_dir)

    def source_gguf(self) -> Path | None:
        """The GGUF file the base model was converted from, if it was (models/cache.py), and is still there."""
        try:
            source = Path(json.loads((self.base_path / MARKER).read_text())["source"])
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            return None
        return source if source.is_file() else None
