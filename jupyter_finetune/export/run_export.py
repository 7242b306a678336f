"""One export of a run: checks first (kind, quant, target, architecture, chat template), then weights (or, for a
script, the run's settings and data)."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import path_problem
from ..runs import Run
from ..runs.store import write_json
from .card import model_card
from .gguf_vocab import gguf_vocab, source_pre_tokenizer
from .gguf_families import family_of
from .gguf_writer import write_gguf
from .merge import merged_dtype, merged_weights, save_merged
from .ollama import Modelfile, create_command, shared_system_prompt, stop_sequences
from .ollama_template import chat_layout
from .result import DEFAULT_QUANT, KINDS, QUANTS, ExportError, ExportResult
from .script import ScriptSource, write_script
from .source import RunSource
from .targets import MARKER, claim, gguf_name, listing, publish, staging, target_path

_NOT_COPIED = ("training_args.bin", "README.md")
"""A pickled trainer state nobody needs to load a model, and PEFT's empty card (ours replaces it)."""


def export_run(run: Run, kind: str = "adapter", *, quant: str | None = None, out: str | Path | None = None,
               overwrite: bool = False) -> ExportResult:
    """Write the run as ``kind`` (adapter, merged, gguf, ollama, script) and record it in the run store.

    ``quant`` None: f16 for gguf, q4_k_m for ollama (DEFAULT_QUANT)."""
    if kind not in KINDS:
        raise ExportError(f"--to {kind!r}: use one of {', '.join(KINDS)}")
    quant = quant or DEFAULT_QUANT.get(kind, "f16")
    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: use one of {', '.join(QUANTS)} (quantize further with llama.cpp)")
    source = ScriptSource.of(run) if kind == "script" else RunSource.of(run)
    target = target_path(run, kind, quant, out)
    claim(target, overwrite)
    if kind in ("gguf", "ollama"):
        family_of(source.base_config)
    with staging(target) as folder:
        notes, command = _WRITERS[kind](source, folder, quant, target)
        written = folder / target.name if kind == "gguf" else folder
        result = ExportResult(run.name, kind, target, listing(written), quant if kind in ("gguf", "ollama") else None,
                              notes, command, created=time.time())
        if written.is_dir():
            write_json(written / MARKER, result.record())
        publish(written, target)
    return _recorded(run, result)


def _recorded(run: Run, result: ExportResult) -> ExportResult:
    """The result, with a note when the run store cannot keep its record (read-only, full): the files are
    complete, so the export succeeded; only the run's list of its exports misses it."""
    try:
        run.record_export(result.record())
    except OSError as exc:
        problem = path_problem(exc)
        if problem is None:
            raise
        return replace(result, notes=(*result.notes, f"the export is complete but could not be recorded in run "
                                                     f"{run.name!r}: {problem}"))
    return result


def _adapter(source: RunSource, folder: Path, quant: str, target: Path) -> tuple[tuple[str, ...], None]:
    for path in source.run.adapter_dir.iterdir():
        if path.is_file() and path.name not in _NOT_COPIED:
            shutil.copy2(path, folder / path.name)
    notes = (f"trained on {source.settings.quant} quantized base weights (QLoRA): load the base model the same way "
             "for results identical to training",) if source.quantized_training else ()
    (folder / "README.md").write_text(model_card(source, "adapter", notes), encoding="utf-8")
    return notes, None


def _merged(source: RunSource, folder: Path, quant: str, target: Path) -> tuple[tuple[str, ...], None]:
    dtype, note = merged_dtype(source)
    notes = (note,) if note else ()
    save_merged(merged_weights(source), source.tokenizer(), folder, dtype)
    (folder / "README.md").write_text(model_card(source, "merged", notes), encoding="utf-8")
    return notes, None


def _gguf(source: RunSource, folder: Path, quant: str, target: Path) -> tuple[tuple[str, ...], None]:
    _write_gguf(source, source.tokenizer(), folder / target.name, quant)
    return _quantized_note(source), None


def _ollama(source: RunSource, folder: Path, quant: str, target: Path) -> tuple[tuple[str, ...], str]:
    tokenizer = source.tokenizer()
    layout = chat_layout(tokenizer)  # refuses an inexpressible chat template before any weights load
    system, system_note = shared_system_prompt(source.run.conversations())
    name = gguf_name(source.run.name, quant)
    _write_gguf(source, tokenizer, folder / name, quant)
    modelfile = Modelfile(name, layout.go_template(), stop_sequences(layout, tokenizer, source.end_token_ids), system)
    (folder / "Modelfile").write_text(modelfile.text(), encoding="utf-8")
    notes = _quantized_note(source) + layout.notes() + ((system_note,) if system_note else ())
    return notes, create_command(source.run.name, target)


def _script(source: ScriptSource, folder: Path, quant: str, target: Path) -> tuple[tuple[str, ...], str]:
    return write_script(source, folder, target)


def _write_gguf(source: RunSource, tokenizer: Any, path: Path, quant: str) -> None:
    """The vocabulary is read (and may be refused) before the weights load."""
    config = getattr(source.base_config, "text_config", source.base_config)  # multimodal: its language model
    vocab = gguf_vocab(tokenizer, config.vocab_size, source_pre_tokenizer(source.source_gguf()))
    write_gguf(merged_weights(source), vocab, path, quant=quant, name=source.run.name)


def _quantized_note(source: RunSource) -> tuple[str, ...]:
    if not source.quantized_training:
        return ()
    return (f"run {source.run.name!r} trained on {source.settings.quant} quantized base weights (QLoRA); the GGUF "
            f"holds its adapter merged into the unquantized base model at {source.base_path}, not into quantized "
            "weights",)


_WRITERS: dict[str, Any] = {"adapter": _adapter, "merged": _merged, "gguf": _gguf, "ollama": _ollama,
                             "script": _script}
