"""The plain-Python facade: everything a magic does, callable from a script.

Every operation lives in its own package, one function each: ``data.load_data``,
``engine.prepare_training`` / ``engine.plan.plan_training``, ``evaluation.run_eval.evaluate_run``,
``export.export_run``, ``runs.summary``. This module only finds the run store and the run by
name, calls that function and returns its result. Training is the one operation with a live
display: ``train`` attaches the ui's dashboard to the job (ui renders objects of the layers below
and never calls back into api). The only state here is the current kernel's running jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import DEFAULT_MAX_LENGTH
# What front ends (magics, widgets) may need from below api, so that they import nothing else:
# the choices each option takes, and the errors a user can fix (FinetuneError; a DataError also lists
# its problems; path_problem words an OSError the user can fix). None of these imports torch.
from .data import FORMATS, DataError
from .engine.config import BACKENDS, DPO_LOSSES, PRESETS, QUANTS, STRATEGIES
from .engine.config import METHODS as TRAIN_METHODS
from .errors import FinetuneError, InvalidValue, path_problem
from .export.result import KINDS as EXPORT_KINDS
from .export.result import QUANTS as GGUF_QUANTS
from .models.aliases import DEFAULT_MODEL
from .models.memory import METHODS

__all__ = ["BACKENDS", "DEFAULT_MODEL", "DPO_LOSSES", "EXPORT_KINDS", "FORMATS", "GGUF_QUANTS", "METHODS", "PRESETS",
           "QUANTS", "SPLITS", "STRATEGIES", "TRAIN_METHODS", "DataError", "FinetuneError", "chat", "chat_session", "compare_runs", "data_spec",
           "eval_history", "evaluate", "example_data", "export", "join_training", "load_data", "plan",
           "prepare_training", "runs", "stop", "train", "train_async"]

SPLITS = ("test", "train")

# The current kernel's running jobs, so that %ft_stop and the dashboard's button can reach them.
_JOBS: dict[str, Any] = {}


def data_spec(spec: str) -> tuple[str, str]:
    """``"tickets:test"`` -> ``("tickets", "test")``: a data set's name and the split to use (default test)."""
    name, _, split = spec.partition(":")
    if not name.isidentifier() or (split or "test") not in SPLITS:
        raise InvalidValue(f"--data {spec!r}: give a data set's name and optionally :test or :train, "
                           "e.g. tickets:test")
    return name, split or "test"


def example_data(name: str = "tickets") -> Path:
    """A sample data set shipped in the package (``tickets``), so a first notebook runs before the user has data."""
    from .data.samples import sample_path

    return sample_path(name)


def load_data(name: str, source: Any, *, format: str = "auto", split: float | Any = 0.1, seed: int = 0,
              model: str = DEFAULT_MODEL, max_length: int = DEFAULT_MAX_LENGTH) -> Any:
    """Check, count and split ``source`` (JSONL text, a file, a DataFrame, a datasets.Dataset, a list of
    dicts) and return the data set (an FtDataset); training keeps a copy of it with the run.

    ``split`` is a test fraction, or a test set in any form ``source`` accepts. Raises
    ``DataError`` listing every problem (with row numbers).
    """
    from .data import load_data as load

    return load(name, source, model=model, format=format, split=split, seed=seed, max_length=max_length)


def plan(model: str | None = None, data: Any = None, *, gpu: str | None = None, method: str | None = None,
         preset: str = "balanced", gpus: int | str | None = None, strategy: str | None = None,
         **settings: Any) -> Any:
    """Peak GPU memory by component, which GPUs it fits, time and cost per epoch, and settings that fit.

    Reads only the model's config (no weights). ``settings`` are TrainConfig fields (batch_size,
    max_length, rank, quant, gradient_checkpointing, ...) filled from ``preset`` as %ft_train fills
    them; max length defaults to the data's. Without ``data`` there is no time or cost. The
    recommendation is for ``gpu`` (default: this kernel's GPU, else a T4). ``gpus`` (a number, or
    "all" for every GPU this kernel sees) plans data-parallel training with ``strategy`` ddp (a whole
    copy per GPU) or fsdp (sharded): memory is then per GPU, time for them all together. Without
    ``gpus``, the recommendation may use every GPU this kernel sees (Kaggle's two T4s) where it pays.
    ``method`` (METHODS) is lora, full, or LoRA on preference pairs: dpo (both answers of a pair and the
    reference's forward pass counted) or orpo; default dpo for a preference data set, else lora.
    """
    from .engine.plan import plan_training

    return plan_training(model, data, gpu=gpu, method=method, preset=preset, gpus=gpus, strategy=strategy,
                         **settings)


def prepare_training(data: Any = None, *, name: str | None = None, preset: str = "balanced",
                     resume: str | None = None, overwrite: bool = False, runs_dir: str | Path | None = None,
                     callbacks: list[Any] | None = None, **settings: Any) -> Any:
    """Everything before the first step: settings checked, backend chosen, run folder written.

    Returns a TrainJob that is not started yet, so a caller can attach listeners first; ``train``
    is the one-call form.
    """
    from .engine.prepare import prepare_training as prepare
    from .evaluation.loading import release_models
    from .evaluation.validation import slice_validator
    from .runs import RunStore

    release_models()  # a model kept for evaluation or chat would take training's memory
    job = prepare(RunStore.at(runs_dir), data, name=name, preset=preset, resume=resume, overwrite=overwrite,
                  callbacks=callbacks, validator=slice_validator, **settings)
    _JOBS[job.run.name] = job
    return job


def train(data: Any = None, *, background: bool = False, **options: Any) -> Any:
    """Train with the live dashboard (text progress outside a notebook) and return the TrainResult;
    with ``background`` return the running TrainJob at once. ``options`` as ``prepare_training``."""
    from .ui.training import show_job

    job = prepare_training(data, **options)
    if job.main:  # in a multi-process launch, rank 0 reports for all
        show_job(job)
    return job.start() if background else job.train()


async def train_async(data: Any = None, **options: Any) -> Any:
    """``train`` for an awaited notebook cell: the kernel handles the Stop button between steps."""
    from .ui.kernel_comms import dispatch_waiting_comms
    from .ui.training import show_job

    job = prepare_training(data, **options)
    show_job(job)
    return await job.train_async(while_waiting=dispatch_waiting_comms)


def join_training(run: str, *, runs_dir: str | Path | None = None) -> Any:
    """Train this worker process's share of ``run``, prepared by ``train(..., gpus=N)``: what each process that
    ``accelerate launch`` starts does (``python -m jupyter_finetune.worker``). Rank 0 writes the run store."""
    from .engine.prepare import join_training as join
    from .evaluation.validation import slice_validator
    from .runs import RunStore

    return join(RunStore.at(runs_dir), run, validator=slice_validator).train()


def stop(name: str | None = None) -> list[str]:
    """Ask running jobs of this kernel (one, or all) to stop at the next step; returns their names."""
    names = [name] if name else [n for n, job in _JOBS.items() if not job.done]
    for n in names:
        if n not in _JOBS:
            raise InvalidValue(f"no run named {n!r} is training in this kernel (running: "
                               f"{', '.join(k for k, j in _JOBS.items() if not j.done) or 'none'})")
        _JOBS[n].stop()
    return names


def evaluate(run: str, data: Any = None, *, split: str = "test", against: tuple[str, ...] | str | None = None,
             shots: int = 3, docs: str | Path | None = None, passages: int = 3,
             metrics: tuple[Any, ...] | str | None = None, threshold: str | float | None = None,
             requests_per_day: int = 1000, payback_days: int = 30, max_new_tokens: int | None = None,
             batch_size: int | None = None, limit: int | None = None, forgetting: bool = False,
             regenerate: bool = False, runs_dir: str | Path | None = None) -> Any:
    """Fine-tuned vs prompting (base, fewshot, retrieval), RAG and both on held-out rows, with a
    recommendation and its break-even (an EvalReport).

    ``data`` defaults to the run's own copy (its test split); ``against`` to base, fewshot and
    retrieval, plus rag when ``docs`` (a folder of .md/.txt/.html/.pdf files or a JSONL of passages)
    is given; ``"none"`` evaluates the fine-tuned model alone. ``threshold`` is the bar; the
    recommendation weighs the systems that pass by training cost and prompt tokens at
    ``requests_per_day`` over ``payback_days``. ``metrics`` default to JSON metrics when the answers
    are JSON, else exact/f1/rougeL; ``max_new_tokens`` to the longest reference answer plus a margin;
    ``batch_size`` to what free memory holds. The model loads through the run's own backend, device and
    precision, and stays loaded for ``chat`` of the same run. Answers are kept with the run and reused
    when asked again with the same adapter and settings.

    A run trained from another run's adapter (``from_run``) is compared with that adapter as well. On
    preference pairs the references are the chosen answers, and the report also has ``preference``: each
    model's preference accuracy on the held-out pairs (base, the starting run, the run) and the mean length
    of every system's answers beside the chosen and rejected ones.
    """
    from .evaluation.run_eval import evaluate_run
    from .runs import RunStore

    return evaluate_run(RunStore.at(runs_dir).get(run), data, split=split, against=against, shots=shots, docs=docs,
                        passages=passages, metrics=metrics, threshold=threshold, requests_per_day=requests_per_day,
                        payback_days=payback_days, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        limit=limit, forgetting=forgetting, regenerate=regenerate)


def runs(runs_dir: str | Path | None = None) -> list[Any]:
    """A RunSummary per run in the store, newest first: status, settings, losses, eval scores."""
    from .runs import list_runs

    return list_runs(runs_dir)


def eval_history(run: str, *, tolerance: float | None = None, metric: str | None = None,
                 runs_dir: str | Path | None = None) -> Any:
    """Every saved evaluation of ``run`` over time and data versions (a History), each compared with the
    previous one of the same adapter: a fall of ``metric`` (default: the newest evaluation's first) for
    fine-tuned by more than ``tolerance`` (default 0.05) is flagged; a retrained adapter starts afresh."""
    from .evaluation.drift import DEFAULT_TOLERANCE, analyse
    from .runs import RunStore

    found = RunStore.at(runs_dir).get(run)
    return analyse(found.name, found.evaluation_history(), metric=metric,
                   tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance)


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

    ``system`` defaults to the training data's system prompt; pass "" to send none. The model stays
    loaded in the kernel, so the next call for this run (chat or evaluate) does not load it again.
    """
    return chat_session(run, runs_dir=runs_dir, max_new_tokens=max_new_tokens).ask(message, system)


def export(run: str, to: str = "adapter", *, quant: str | None = None, out: str | Path | None = None,
           overwrite: bool = False, runs_dir: str | Path | None = None) -> Any:
    """Write a trained run as its adapter (with a model card), merged safetensors, a GGUF file or an Ollama folder;
    or any prepared run as a script folder that trains it again elsewhere (train.py, its data, accelerate's
    config, a SLURM file and a README with the commands).

    ``to`` is adapter, merged, gguf, ollama or script; ``quant`` (f16, q8_0, q4_k_m, q5_k_m or q6_k; default f16 for
    gguf, q4_k_m for ollama) applies to gguf and ollama.
    Exports go into the run's own export folder unless ``out`` is given, and are recorded with the
    run. Returns an ExportResult (files, notes, and the command to run next: ``ollama create`` for ollama,
    ``accelerate launch`` for script).
    Raises ExportExists for an existing target unless ``overwrite``, and ExportError (a ValueError)
    for what this run or model cannot be exported as, before weights load.
    """
    from .export import export_named

    return export_named(run, to, quant=quant, out=out, overwrite=overwrite, runs_dir=runs_dir)
