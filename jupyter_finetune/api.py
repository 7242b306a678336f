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
        config = build_config(preset, model=settings.pop("model", None) or data.model, **settings)
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


def evaluate(run: str, data: FtDataset | None = None, *, runs_dir: str | Path | None = None,
             metrics: tuple[str, ...] = ("json_valid", "json_fields", "exact"), max_new_tokens: int = 64,
             batch_size: int = 8, limit: int | None = None) -> Any:
    """Base vs fine-tuned on the run's held-out rows (its stored data unless ``data`` is given)."""
    from .data import restore
    from .evaluation.compare import compare
    from .models import load_tokenizer, resolve_model
    from .runs import RunStore

    stored = RunStore.at(runs_dir).get(run)
    config = stored.read("config.json")
    if not (stored.adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"run {run!r} has no adapter yet (status {stored.status()['status']})")
    model = config["train"]["model"]
    if data is None:
        data = restore(stored.path / "data.jsonl", stored.read("data.json"), load_tokenizer(model))
    return compare(resolve_model(model).path, stored.adapter_dir, data, metrics=metrics,
                   max_new_tokens=max_new_tokens, batch_size=batch_size, limit=limit)
