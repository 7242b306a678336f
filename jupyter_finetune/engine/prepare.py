"""Everything before a run's first step: settings checked, backend chosen, run folder written.

Returns a TrainJob that is not started yet, so a caller can attach listeners (a dashboard) first:
one that trains in this process, or with ``gpus`` > 1 a WorkerJob that launches worker processes
(engine.supervise), each of which joins the prepared run (``join_training``). Inside a launch (a
script started by ``accelerate launch`` or torchrun), every process calls ``prepare_training`` alike:
rank 0 makes the run, and each rank returns its own part of it.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import Any

from ..data import FtDataset, restore
from ..data.dataset import ValidationSplit
from ..data.length import MOST_VALIDATION_ROWS, choose_length
from ..models import load_config, load_tokenizer, resolve_model, saved_quantization
from ..models.gpus import kernel_device
from ..models.size import parameter_count
from ..runs import Run, RunSettings, RunStore
from ..runs.store import ACTIVE
from .backends import select_backend
from .config import ConfigError, TrainConfig, build_config
from .job import TrainJob
from .launch import Launch, worker_count
from .preference import check_resumable, method_settings
from .supervise import WorkerJob
from .validation import MakeValidator


def prepare_training(store: RunStore, data: FtDataset | None = None, *, name: str | None = None,
                     preset: str = "balanced", resume: str | None = None, overwrite: bool = False,
                     callbacks: list[Any] | None = None, validator: MakeValidator | None = None,
                     **settings: Any) -> TrainJob:
    """A new run of ``data`` with ``preset`` and ``settings`` (TrainConfig fields), or run ``resume``
    continued from its last checkpoint with its own settings (and its own copy of the data when
    ``data`` is None). ``validator`` scores generations on the validation slice during training;
    without it the slice gives the eval loss only."""
    launch = Launch.current()
    if launch is not None and not launch.main:  # rank 0 makes the run; the others join it
        return join_training(store, _shared(None), data, callbacks, validator)
    if resume is not None:
        job = _resumed(store, resume, data, settings, callbacks, validator)
    else:
        job = _new(store, data, name, preset, overwrite, callbacks, validator, settings)
    if launch is not None:
        _shared(job.run.name)
    return job


def _new(store: RunStore, data: FtDataset | None, name: str | None, preset: str, overwrite: bool,
         callbacks: list[Any] | None, validator: MakeValidator | None, settings: dict[str, Any]) -> TrainJob:
    if data is None:
        raise ConfigError("give the data to train on: a data set made by %ft_data / load_data")
    if settings.get("max_length") is None:
        settings["max_length"] = data.max_length
    launch = Launch.current()  # launched, the processes started are what trains, whatever the settings said
    settings["gpus"] = launch.world if launch else worker_count(settings.get("gpus"))
    settings, start = method_settings(store, data, settings)
    model = settings.pop("model", None) or data.model
    config = build_config(preset, model=model, **with_saved_quantization(model, settings))
    split = data.validation_split(config.validation, MOST_VALIDATION_ROWS)
    config, length = with_length(config, split)
    backend, reason = select_backend(config)
    model_path = resolve_model(config.model).path
    if data.model != config.model:  # count tokens with the chat template of the model that trains
        data = replace(data, renderer=type(data.renderer)(load_tokenizer(config.model)), model=config.model,
                       parameters=parameter_count(load_config(config.model)))
    run = store.create(name, overwrite=overwrite, prefix=data.name)
    if start is not None:
        run.keep_start_adapter(start)
    run.begin(RunSettings(config.to_dict(), preset, reason, str(model_path), length, kernel_device()), data.manifest(),
              data.jsonl())
    return _job_class(config)(run, data, config, model_path, backend, [], callbacks=callbacks, split=split,
                              validator=validator, note=length, launch=launch)


def _job_class(config: TrainConfig) -> type[TrainJob]:
    """Several GPUs from a notebook or a plain script: worker processes; one, or already launched: this one."""
    return WorkerJob if config.gpus > 1 and Launch.current() is None else TrainJob


def _shared(name: str | None) -> str:
    """Rank 0's run name, on every rank of a launch, once rank 0 has written the run."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    from .backends import cuda_available

    state = PartialState(cpu=not cuda_available())  # the process group the Trainer will use too
    shared = broadcast_object_list([name])
    state.wait_for_everyone()
    return shared[0]


def join_training(store: RunStore, name: str, data: FtDataset | None = None, callbacks: list[Any] | None = None,
                  validator: MakeValidator | None = None) -> TrainJob:
    """This process's part of a run prepared by rank 0 or by the notebook (%ft_train --gpus N), continued
    from its last checkpoint when it has one; the run's own settings and, unless given, its copy of the data."""
    run, launch = store.get(name), Launch.current()
    try:
        config = TrainConfig.from_dict(run.settings().train)
        if data is None:
            data = restore(run.manifest(), run.data_rows(), load_tokenizer(config.model))
        backend, _ = select_backend(config)
        return TrainJob(run, data, config, resolve_model(config.model).path, backend, [], resume=run.resume_point(),
                        callbacks=callbacks, split=data.validation_split(config.validation, MOST_VALIDATION_ROWS),
                        validator=validator, launch=launch)
    except Exception as exc:  # the kernel reports a worker's failure in the worker's words
        run.write_worker_error(launch.rank if launch else 0, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise


def with_length(config: TrainConfig, split: ValidationSplit) -> tuple[TrainConfig, str]:
    """The settings with the training length and early stopping decided, and a sentence saying how.

    Without --epochs or --steps the length comes from the data (data.length), and early stopping is
    on unless turned off; asked for without a validation slice, early stopping is refused here,
    before anything loads."""
    chosen = config.epochs is None and config.steps is None
    scored = config.method == "sft"  # a preference run scores held-out pairs, not generated answers
    if config.early_stopping and not scored:
        raise ConfigError(f"early stopping follows the score of generated answers, which --method {config.method} "
                          "does not generate during training (it scores held-out pairs): drop --early-stopping")
    early = chosen and scored if config.early_stopping is None else config.early_stopping
    if early and not split.validation:
        if config.early_stopping:
            raise ConfigError(f"early stopping needs validation rows, and {len(split.train)} training rows at "
                              f"--validation {config.validation:g} leave none: add rows, raise --validation, or "
                              "train without --early-stopping")
        early = False
    held = f" ({len(split.validation)} more set aside to validate on)" if split.validation else ""
    if chosen:
        length = choose_length(len(split.train), split.train_tokens, config.batch_size * config.gpus,
                               config.grad_accum, config.examples_seen)
        config, text = replace(config, epochs=float(length.epochs)), length.reason.replace(" examples:", f" examples{held}:", 1)
    else:
        given = f"{config.steps} steps" if config.steps else f"{config.epochs:g} epochs"
        text = f"{len(split.train):,} examples{held}: {given}, as given"
    stopping = (f"; stops early when the validation score has not improved for {config.patience} validations"
                if early else "")
    return replace(config, early_stopping=early), text + stopping


def _resumed(store: RunStore, name: str, data: FtDataset | None, settings: dict[str, Any],
             callbacks: list[Any] | None, validator: MakeValidator | None) -> TrainJob:
    given = sorted(k for k, v in settings.items() if v is not None and k not in MOVABLE)
    if given:
        raise ConfigError(f"--resume continues with the run's own settings (--gpus and --strategy aside); drop "
                          f"{', '.join(given)} or start a new run")
    run = store.get(name)
    run.check()  # a damaged file is named before anything is appended to the run
    status = run.status()
    if status.get("status") in ACTIVE:
        raise ConfigError(f"run {name!r} is still training (pid {status.get('pid')} on {status.get('host', '?')}); "
                          f"stop it first (%ft_stop {name} in its notebook)")
    config, moved = _moved(TrainConfig.from_dict(run.settings().train), settings)
    check_resumable(config)
    manifest = run.manifest()
    if data is None:
        data = restore(manifest, run.data_rows(), load_tokenizer(config.model))
    if data.version != manifest.version:
        raise ConfigError(f"run {name!r} was trained on data version {manifest.version} but "
                          f"{data.name!r} is version {data.version}; resume with the same data "
                          f"(or omit it: the run keeps a copy), or start a new run")
    backend, reason = select_backend(config)
    if moved:  # saved once it is known to run here
        run.change_settings(replace(run.settings(), train=config.to_dict(), backend=reason))
    point = run.resume_point()
    return _job_class(config)(run, data, config, resolve_model(config.model).path, backend, [], resume=point,
                              callbacks=callbacks, note=point.note(status.get("step") or 0) + moved,
                              split=data.validation_split(config.validation, MOST_VALIDATION_ROWS),
                              validator=validator, launch=Launch.current())


MOVABLE = ("gpus", "strategy")
"""What a resume may change: a run started on Kaggle's two GPUs can go on with one elsewhere."""


def _moved(config: TrainConfig, settings: dict[str, Any]) -> tuple[TrainConfig, str]:
    """The run's settings with --gpus/--strategy of the resume, and what that changes ("" when nothing)."""
    asked = {"gpus": worker_count(settings.get("gpus")), "strategy": settings.get("strategy")}
    changes = {k: v for k, v in asked.items() if v is not None and v != getattr(config, k)}
    if not changes:
        return config, ""
    moved = replace(config, **changes)
    before, after = (c.gpus * c.batch_size * c.grad_accum for c in (config, moved))
    batch = (f"; the global batch goes from {before} to {after} examples per step, so the steps left see the data "
             f"in another grouping than an uninterrupted run" if before != after else "")
    return moved, f"; continuing on {moved.gpus} process{'es' * (moved.gpus > 1)} ({moved.strategy}){batch}"


def with_saved_quantization(model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A model saved in 4-bit (an ``unsloth/...-bnb-4bit`` id) trains as QLoRA without being told; it
    cannot load at another precision."""
    saved = saved_quantization(load_config(model))
    if saved is None:
        return settings
    if settings.get("quant") not in (None, saved):
        raise ConfigError(f"{model} is saved with {saved} bitsandbytes weights, so it trains with --quant {saved} "
                          f"only (got --quant {settings['quant']}); for another precision use its 16-bit "
                          "version (the same name without -bnb-4bit)")
    return {**settings, "quant": saved}
