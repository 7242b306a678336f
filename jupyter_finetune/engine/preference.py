"""Preference tuning with TRL: DPO against a reference that is the same weights, and ORPO without one.

No second copy of the model is loaded for DPO's reference. Trained from scratch, the reference is the
base with the adapter switched off (a fresh LoRA adds nothing at step 0). Started from a run's adapter
(``--from``), the reference is that adapter, kept frozen beside the one that trains: TRL copies it as
the adapter "ref" (TRL 0.29+), or is told the names of the two copies loaded here (older TRL). Either
way the policy equals the reference at step 0, so the first loss is log 2.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..data import FtDataset
from ..data.dataset import ValidationSplit
from ..errors import FinetuneError
from ..runs import RunStore, holds_adapter
from .arguments import trainer_args
from .config import PREFERENCE_METHODS, ConfigError, TrainConfig

REFERENCE_ADAPTER = "ref"
"""TRL's name for the frozen copy of a starting adapter."""


class OrpoUnavailable(FinetuneError):
    """The installed TRL has no ORPO trainer."""


def orpo_classes() -> tuple[type, type]:
    """TRL's ORPOConfig and ORPOTrainer: in ``trl.experimental`` since 0.26, before that in ``trl``."""
    try:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    except ImportError:
        try:
            from trl import ORPOConfig, ORPOTrainer
        except ImportError:
            import trl

            raise OrpoUnavailable(f"--method orpo needs TRL's ORPOTrainer, which trl {trl.__version__} does not "
                                  "have: use --method dpo, or install a trl that has it") from None
    return ORPOConfig, ORPOTrainer


def names_its_reference() -> bool:
    """Whether the installed TRL is told the names of the two adapters (before 0.29) instead of copying one."""
    from trl import DPOConfig

    return "ref_adapter_name" in {f.name for f in dataclasses.fields(DPOConfig)}


def _named_reference(config: TrainConfig) -> bool:
    """Whether this run loads the frozen copy of its starting adapter itself and names both copies to TRL:
    DPO (ORPO has no reference) from an adapter, on a TRL before 0.29."""
    return config.method == "dpo" and bool(config.from_run) and names_its_reference()


def check_resumable(config: TrainConfig) -> None:
    """A DPO run started ``--from`` an adapter resumes with TRL 0.29+ only: older TRL's named adapters come back
    from a checkpoint with the policy equal to the reference (measured: the loss is log 2 again)."""
    if _named_reference(config):
        import trl

        raise ConfigError(f"resuming a DPO run that started --from another adapter needs trl 0.29 or newer (this is "
                          f"trl {trl.__version__}, whose checkpoint would come back with the policy reset to its "
                          "reference): pip install -U 'trl>=0.29', or train the run again")


def preference_args(config: TrainConfig, output_dir: Path, split: ValidationSplit, eval_steps: int) -> Any:
    """The DPOConfig (or ORPOConfig) for these settings; held-out pairs scored every ``eval_steps``."""
    from trl import DPOConfig

    kind = DPOConfig if config.method == "dpo" else orpo_classes()[0]
    names = {f.name for f in dataclasses.fields(kind)}
    method: dict[str, Any] = {"beta": config.beta}
    if config.method == "dpo":
        method["loss_type"] = [config.loss] if "loss_weights" in names else config.loss
    if "max_prompt_length" in names:  # older TRL cuts prompts at 512 tokens on its own: only max_length cuts here
        method["max_prompt_length"] = None
    if _named_reference(config):  # older TRL: the two copies are named, not made
        method.update(model_adapter_name="default", ref_adapter_name=REFERENCE_ADAPTER)
    return trainer_args(kind, config, output_dir, split, False, eval_steps, **method)


def preference_trainer(config: TrainConfig, dataset: FtDataset, split: ValidationSplit, model: Any,
                       peft_config: Any, args: Any, tokenizer: Any, callbacks: list[Any],
                       start: Path | None) -> Any:
    """TRL's DPOTrainer (or ORPOTrainer) on ``model``: a base with ``peft_config`` to apply, or a PeftModel
    that holds the adapter of ``start``."""
    from trl import DPOTrainer

    trainer_class = DPOTrainer if config.method == "dpo" else orpo_classes()[1]
    if start is not None and _named_reference(config):
        trained = [p for p in model.parameters() if p.requires_grad]
        model.load_adapter(str(start), adapter_name=REFERENCE_ADAPTER)  # frozen; peft 0.18 freezes the others too
        for parameter in trained:
            parameter.requires_grad_(True)
    return trainer_class(
        model=model, args=args, train_dataset=dataset.to_hf_pairs(split.train),
        eval_dataset=dataset.to_hf_pairs(split.validation) if split.validation else None,
        processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
    )


def drop_reference_copy(adapter_dir: Path) -> None:
    """A saved PeftModel writes every adapter it holds; the frozen reference copy is not the run's adapter."""
    import shutil

    shutil.rmtree(adapter_dir / REFERENCE_ADAPTER, ignore_errors=True)


def method_settings(store: RunStore, data: FtDataset, settings: dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """The settings with the method decided (dpo for preference pairs, else sft) and, with ``from_run``, that
    run's model and adapter shape; and the adapter to start from. Refused here, before anything loads: a
    preference method on data without pairs, a starting run without an adapter or on another model."""
    method = settings.get("method") or ("dpo" if data.is_preference else "sft")
    if method in PREFERENCE_METHODS and not data.is_preference:
        raise ConfigError(f"--method {method} learns from pairs of answers, and {data.name!r} is {data.format} data "
                          f"without them: make the data with %%ft_data NAME --format preference (rows with prompt, "
                          "chosen and rejected), or train it with --method sft")
    if method == "orpo":
        orpo_classes()  # an older or newer TRL without it is named here, not after the run is made
    settings = {**settings, "method": method}
    if not settings.get("from_run"):
        return settings, None
    adapter, trained = _start(store, settings["from_run"])
    model = trained.get("model")
    if settings.get("model") and model and settings["model"] != model:
        raise ConfigError(f"{settings['from_run']!r} holds an adapter for {model}, not {settings['model']}: "
                          "leave --model out to train that model further")
    mismatched = sorted(k for k in ("rank", "alpha", "target_modules")
                        if trained[k] is not None and settings.get(k) not in (None, trained[k]))
    if mismatched:
        raise ConfigError(f"the adapter of {settings['from_run']!r} has its own {', '.join(mismatched)}; drop "
                          f"{', '.join('--' + k.replace('_', '-') for k in mismatched)} to train it further")
    shape = {k: v for k, v in trained.items() if v is not None and (k != "quant" or not settings.get("quant"))}
    return {**settings, **shape}, adapter


def _start(store: RunStore, source: str) -> tuple[Path, dict[str, Any]]:
    """The adapter ``--from`` names, and its shape (model, rank, alpha, target_modules, quant; None where
    unknown): a run of the store, or a folder holding a saved PEFT adapter (an exported script's copy)."""
    folder = Path(source).expanduser()
    a_path = "/" in source or source.startswith(".")
    if holds_adapter(folder) and (a_path or not (store.root / source).is_dir()):
        saved = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        # target modules unknown: peft saves all-linear as the names it found, which no setting spells alike
        return folder, {"model": None, "rank": saved.get("r"), "alpha": saved.get("lora_alpha"),
                        "target_modules": None, "quant": None}
    if a_path:
        raise ConfigError(f"{source} is not a folder with a saved adapter (adapter_config.json): give a run name "
                          "(%ft_runs lists them) or an adapter folder")
    run = store.get(source)
    if not holds_adapter(run.adapter_dir):
        raise ConfigError(f"run {run.name!r} has no adapter to start from (status "
                          f"{run.status().get('status', 'unknown')}): train it to the end first, or pick another "
                          "run (%ft_runs lists them)")
    trained = TrainConfig.from_dict(run.settings().train)
    return run.adapter_dir, {"model": trained.model, "rank": trained.rank, "alpha": trained.alpha,
                             "target_modules": trained.target_modules, "quant": trained.quant}
