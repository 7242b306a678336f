"""The plain-Python facade: everything a magic does, callable from a script."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .data import DEFAULT_MAX_LENGTH, FtDataset, RawRow, prepare, read_path, read_records, read_text

DEFAULT_MODEL = "smollm2-135m"


def data_dir() -> Path:
    """Where stored copies of data sets go: $JUPYTER_FINETUNE_DATA, else ./ft_data."""
    return Path(os.environ.get("JUPYTER_FINETUNE_DATA", "ft_data"))


def example_data(name: str = "tickets") -> Path:
    """A sample data set shipped in the package (``tickets``), so a first notebook runs before the user has data."""
    from .data.samples import sample_path

    return sample_path(name)


def read_rows(source: Any) -> list[RawRow]:
    """Rows from JSONL text, a file path, a DataFrame, a datasets.Dataset or a list of dicts."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and not source.lstrip().startswith(("{", "["))):
        return read_path(Path(source).expanduser())
    if isinstance(source, str):
        return read_text(source)
    return read_records(source)


def load_data(name: str, source: Any, *, format: str = "auto", split: float | Any = 0.1, seed: int = 0,
              model: str = DEFAULT_MODEL, max_length: int = DEFAULT_MAX_LENGTH, save: bool = True) -> FtDataset:
    """Check, count and split ``source``, store a versioned copy, and return the data set.

    ``split`` is a test fraction, or a test set in any form ``source`` accepts. Raises
    ``DataError`` listing every problem (with row numbers) before anything is stored.
    """
    from .models import load_config, load_tokenizer
    from .models.size import context_length, parameter_count

    if not name.isidentifier():
        raise ValueError(f"data name {name!r} must be a Python identifier (letters, digits, _), e.g. tickets")
    test = split if isinstance(split, (int, float)) else read_rows(split)
    config = load_config(model)
    ds = prepare(read_rows(source), name=name, tokenizer=load_tokenizer(model), model=model, fmt=format,
                 split=test, seed=seed, max_length=max_length, context_length=context_length(config),
                 parameters=parameter_count(config))
    if save:
        ds.save(data_dir())
    return ds


def plan(model: str | None = None, data: FtDataset | None = None, *, gpu: str | None = None,
         method: str = "lora", preset: str = "balanced", **settings: Any) -> Any:
    """Peak GPU memory by component, which GPUs it fits, time and cost per epoch, and settings that fit.

    Reads only the model's config (no weights). ``settings`` are TrainConfig fields (batch_size,
    max_length, rank, quant, gradient_checkpointing, ...) filled from ``preset`` as %ft_train fills
    them; max length defaults to the data's. Without ``data`` there is no time or cost. The
    recommendation is for ``gpu`` (default: this kernel's GPU, else a T4) and searches every setting not given here.
    """
    from .engine import build_config
    from .models.gpus import gpu_table, kernel_gpu
    from .engine.plan import DEFAULT_GPU, build_plan
    from .models import load_config
    from .models.memory import ModelShape

    model = model or (data.model if data is not None else DEFAULT_MODEL)
    settings = _with_saved_quantization(model, settings)
    given = {k for k, v in settings.items() if v is not None}
    if settings.get("max_length") is None and data is not None:
        settings["max_length"] = data.max_length
    config = build_config(preset, model=model, **settings)
    table = gpu_table()
    chosen = table.get(gpu) if gpu else kernel_gpu(table) or table.get(DEFAULT_GPU)
    return build_plan(model, ModelShape.from_config(load_config(model)), config, method, chosen, table,
                      data.train_lengths if data is not None else None, fixed_length="max_length" in given,
                      fixed_batch="batch_size" in given, fixed_quant="quant" in given)


def _with_saved_quantization(model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A model saved in 4-bit (an ``unsloth/...-bnb-4bit`` id) trains as QLoRA without being told; it
    cannot load at another precision."""
    from .engine import ConfigError
    from .models import load_config, saved_quantization

    saved = saved_quantization(load_config(model))
    if saved is None:
        return settings
    if settings.get("quant") not in (None, saved):
        raise ConfigError(f"{model} is saved with {saved} bitsandbytes weights, so it trains with --quant {saved} "
                          f"only (got --quant {settings['quant']}); for another precision use its 16-bit "
                          "version (the same name without -bnb-4bit)")
    return {**settings, "quant": saved}


# The current kernel's running jobs, so that %ft_stop and the dashboard's button can reach them.
_JOBS: dict[str, Any] = {}


def prepare_training(data: FtDataset | None = None, *, name: str | None = None, preset: str = "balanced",
                     resume: str | None = None, overwrite: bool = False, runs_dir: str | Path | None = None,
                     callbacks: list[Any] | None = None, **settings: Any) -> Any:
    """Everything before the first step: settings checked, backend chosen, run folder written.

    Returns a TrainJob that is not started yet, so a caller can attach listeners (a dashboard)
    first; ``train`` is the one-call form.
    """
    from dataclasses import replace

    from .data import restore
    from .engine import ConfigError, TrainConfig, build_config
    from .engine.backends import select_backend
    from .engine.job import TrainJob
    from .models import load_config, load_tokenizer, resolve_model
    from .models.size import parameter_count
    from .runs import RunStore

    store = RunStore.at(runs_dir)
    given = sorted(k for k, v in settings.items() if v is not None)
    if resume is not None:
        if given:
            raise ConfigError(f"--resume continues with the run's own settings; drop {', '.join(given)} "
                              "or start a new run")
        run = store.get(resume)
        if run.status().get("status") == "running":
            raise ConfigError(f"run {resume!r} is still training (pid {run.status().get('pid')}); stop it first")
        saved = run.read("config.json")
        config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["train"].items()})
        manifest = run.read("data.json")
        if data is None:
            data = restore(run.path / "data.jsonl", manifest, load_tokenizer(config.model))
        if data.version != manifest["version"]:
            raise ConfigError(f"run {resume!r} was trained on data version {manifest['version']} but "
                              f"{data.name!r} is version {data.version}; resume with the same data "
                              f"(or omit it: the run keeps a copy), or start a new run")
        checkpoint = _last_checkpoint(run.checkpoints_dir)
    else:
        if data is None:
            raise ConfigError("give the data to train on: a data set made by %ft_data / load_data")
        if settings.get("max_length") is None:
            settings["max_length"] = data.max_length
        model = settings.pop("model", None) or data.model
        config = build_config(preset, model=model, **_with_saved_quantization(model, settings))
        checkpoint = None
    backend, reason = select_backend(config)
    model_path = resolve_model(config.model).path
    if resume is None:
        if data.model != config.model:
            parameters = parameter_count(load_config(config.model))
            data = replace(data, renderer=type(data.renderer)(load_tokenizer(config.model)), model=config.model,
                           parameters=parameters)
        run = store.create(name, overwrite=overwrite, prefix=data.name)
        run.write("config.json", {"train": config.to_dict(), "preset": preset, "backend": reason,
                                  "model_path": str(model_path)})
        run.write("data.json", data.manifest())
        (run.path / "data.jsonl").write_text(data.jsonl(), encoding="utf-8")
    job = TrainJob(run, data, config, model_path, backend, [], resume_from=checkpoint, callbacks=callbacks)
    _JOBS[run.name] = job
    return job


def stop(name: str | None = None) -> list[str]:
    """Ask running jobs of this kernel (one, or all) to stop at the next step; returns their names."""
    names = [name] if name else [n for n, job in _JOBS.items() if not job.done]
    for n in names:
        if n not in _JOBS:
            raise ValueError(f"no run named {n!r} is training in this kernel (running: "
                             f"{', '.join(k for k, j in _JOBS.items() if not j.done) or 'none'})")
        _JOBS[n].stop()
    return names


def _last_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def evaluate(run: str, data: FtDataset | None = None, *, split: str = "test",
             against: tuple[str, ...] | str = ("base", "fewshot"), shots: int = 3,
             metrics: tuple[Any, ...] | str | None = None, threshold: str | float | None = None,
             max_new_tokens: int | None = None, batch_size: int = 8, limit: int | None = None,
             forgetting: bool = False, regenerate: bool = False, runs_dir: str | Path | None = None) -> Any:
    """Fine-tuned vs base zero-shot vs base few-shot on held-out rows, with a verdict.

    ``data`` defaults to the run's own stored copy (its test split). ``metrics`` default to JSON
    metrics when the answers are JSON, else exact/f1/rougeL; ``max_new_tokens`` to the longest
    reference answer plus a margin. Answers are saved under the run (``eval/<data-version>.json``)
    and reused when asked again with the same adapter and settings.
    """
    from functools import cache, partial

    from .data import restore
    from .evaluation import compare as cmp
    from .evaluation import report
    from .evaluation.forgetting import check_forgetting
    from .evaluation.loading import load_with_adapter
    from .evaluation.metrics import resolve_metric
    from .evaluation.verdict import Threshold, decide
    from .models import load_tokenizer, resolve_model
    from .runs import RunStore

    stored = RunStore.at(runs_dir).get(run)
    stored.trained_adapter()
    model = stored.read("config.json")["train"]["model"]
    tokenizer = load_tokenizer(model)
    if data is None:
        data = restore(stored.path / "data.jsonl", stored.read("data.json"), tokenizer)
    rows = cmp.held_out(data, split, limit)
    systems = ("fine-tuned", *_names(against))
    chosen = dict(resolve_metric(m) for m in (_names(metrics) if metrics else _default_metrics(rows)))
    if max_new_tokens is None:
        longest = max(len(tokenizer(ex.messages[-1]["content"], add_special_tokens=False)["input_ids"]) for ex in rows)
        max_new_tokens = min(1024, longest + 16)
    settings = {"split": split, "shots": shots, "seed": 0, "max_new_tokens": max_new_tokens, "limit": limit}
    adapter = report.adapter_fingerprint(stored.adapter_dir)
    reuse = None if regenerate else report.saved_outputs(stored, data.version, adapter, settings)
    loaded = cache(partial(load_with_adapter, resolve_model(model).path, stored.adapter_dir))  # one load at most
    outputs = cmp.generate_outputs(loaded, rows, data.train, settings, systems=systems, batch_size=batch_size,
                                   reuse=reuse)
    comparison = cmp.score_outputs(outputs, chosen, [{"row": ex.row, "messages": ex.messages} for ex in rows])
    verdict = decide(comparison, Threshold.parse(str(threshold), comparison.metrics[0]) if threshold is not None else None)
    checked = check_forgetting(*loaded()) if forgetting else None
    report.save(stored, data.version, adapter, comparison, verdict, checked)
    generated = tuple(s for s in systems if reuse is None or s not in reuse.generations)
    return report.EvalReport(run, data.name, data.version, comparison, verdict, checked,
                             report.results_file(stored, data.version), generated)


def _names(value: tuple[Any, ...] | list[Any] | str) -> tuple[Any, ...]:
    """``"a,b"`` or a sequence -> a tuple of names."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def _default_metrics(rows: list[Any]) -> tuple[str, ...]:
    from .evaluation.metrics import json_valid

    if all(ex.messages[-1]["content"].lstrip().startswith(("{", "[")) and json_valid(ex.messages[-1]["content"], "")
           for ex in rows):
        return ("json_fields", "json_valid", "exact")
    return ("exact", "f1", "rougeL")


def runs(runs_dir: str | Path | None = None) -> list[Any]:
    """A RunSummary per run in the store, newest first: status, settings, losses, eval scores."""
    from .runs import RunStore
    from .runs.summary import summarize_all

    return summarize_all(RunStore.at(runs_dir))


def compare_runs(names: list[str], runs_dir: str | Path | None = None) -> Any:
    """A RunComparison of the named runs: summaries, loss records, settings and which of them differ."""
    from .runs import RunStore
    from .runs.summary import compare_runs as compare

    return compare(RunStore.at(runs_dir), names)


def chat_session(run: str, *, runs_dir: str | Path | None = None, max_new_tokens: int | None = None) -> Any:
    """A ChatSession: the run's model loaded once, answering each message as base and as fine-tuned.

    Its ``system`` is the system prompt most training rows share; ``max_new_tokens`` defaults to 128.
    """
    from .evaluation.chat import ChatSession
    from .runs import RunStore

    return ChatSession(RunStore.at(runs_dir).get(run), max_new_tokens=max_new_tokens)


def chat(run: str, message: str, *, system: str | None = None, runs_dir: str | Path | None = None,
         max_new_tokens: int | None = None) -> Any:
    """One message answered by the base model and by the fine-tuned one (a ChatReply, with timings).

    ``system`` defaults to the training data's system prompt; pass "" to send none. Loads the model
    on every call: for several messages, keep a ``chat_session`` instead.
    """
    return chat_session(run, runs_dir=runs_dir, max_new_tokens=max_new_tokens).ask(message, system)


def export(run: str, to: str = "adapter", *, quant: str = "f16", out: str | Path | None = None,
           overwrite: bool = False, runs_dir: str | Path | None = None) -> Any:
    """Write a trained run as its adapter (with a model card), merged safetensors, a GGUF file or an Ollama folder.

    ``to`` is adapter, merged, gguf or ollama; ``quant`` (f16 or q8_0) applies to gguf and ollama.
    Exports go under ``ft_runs/RUN/export/<to>/`` unless ``out`` is given, and are recorded in the
    run's ``export/exports.json``. Returns an ExportResult (files, notes, and for ollama the
    ``ollama create`` command). Raises ExportExists for an existing target unless ``overwrite``, and
    ExportError (a ValueError) for what this run or model cannot be exported as, before weights load.
    """
    from .export import export_named

    return export_named(run, to, quant=quant, out=out, overwrite=overwrite, runs_dir=runs_dir)
