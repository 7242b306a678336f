"""Backends load the base model for LoRA training (both feed the same TRL SFTTrainer) and load it
again, with the run's adapter, for evaluation and chat.

A backend is a small protocol, not a class hierarchy: ``hf`` (transformers + peft, bitsandbytes
4/8-bit on CUDA, fp32 on CPU) and ``unsloth`` (NVIDIA GPUs; imported only when chosen, because it
patches transformers and TRL at import) share one ``load`` and one ``load_for_inference``; the
run's model is evaluated where and how it was trained, chosen by the same ``select_backend``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ContextManager, Iterator, Protocol

from ..models.peft_compat import tolerate_old_torchao
from .config import ConfigError, TrainConfig
from .launch import Launch, sharded


@dataclass(frozen=True)
class Loaded:
    """What the trainer needs: the model, and the LoRA config for TRL to apply (None if applied)."""

    model: Any
    peft_config: Any
    precision: str


@dataclass(frozen=True)
class LoadDescription:
    """Where and how a model was loaded for inference: what an evaluation's answers were generated on."""

    device: str
    """``cpu``, ``cuda:0``."""
    dtype: str
    """The compute dtype: ``float32``, ``bfloat16``, ``float16``."""
    quant: str
    """The base weights' quantization: ``none``, ``4bit``, ``8bit``."""
    backend: str
    note: str = ""
    """Why it differs from how the run trained (a 4-bit run evaluated on a CPU), if it does."""

    def text(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"{self.device}/{self.dtype}/{self.quant} ({self.backend}){note}"

    def to_dict(self) -> dict[str, str]:
        return {"device": self.device, "dtype": self.dtype, "quant": self.quant, "backend": self.backend,
                "note": self.note}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "LoadDescription":
        device, dtype, quant, backend = (str(saved.get(k, "?")) for k in ("device", "dtype", "quant", "backend"))
        return cls(device, dtype, quant, backend, str(saved.get("note", "")))


@dataclass(frozen=True)
class InferenceModel:
    """A run's model ready to generate: the base with the adapter attached (a PeftModel in eval mode;
    inside ``model.disable_adapter()`` it is the base model), and how it was loaded."""

    model: Any
    description: LoadDescription


class Backend(Protocol):
    name: str

    def load(self, model_path: Path, config: TrainConfig, start: Path | None = None) -> Loaded:
        """The model to train: a fresh LoRA to apply, or the adapter in ``start`` attached and trainable."""

    def load_for_inference(self, model_path: Path, adapter_dir: Path, config: TrainConfig) -> InferenceModel: ...

    def generating(self, model: Any) -> ContextManager[None]:
        """The training model set up to generate (validation during training), then set back to train."""
        ...

    def ready_for(self, method: str) -> None:
        """Whatever the backend must do before TRL's trainer for ``method`` is built."""


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Dropout off while generating; the model's own train/eval mode again afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    tolerate_old_torchao()
    targets: Any = "all-linear" if config.target_modules == ("all-linear",) else list(config.target_modules)
    return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def from_pretrained_kwargs(quant: str, sharded: bool = False) -> tuple[dict[str, Any], str]:
    """transformers ``from_pretrained`` arguments for the base weights, and that precision in words: 16-bit
    on the GPU (bitsandbytes 4/8-bit for ``quant``), fp32 on CPU. Training and inference load alike.

    One of several processes (engine.launch) loads a whole copy on its own GPU under DDP, as accelerate
    and peft document for QLoRA; under FSDP the plugin places the weights, and 4-bit weights are stored in
    the compute dtype so that FSDP can shard them with the rest."""
    import torch

    if not cuda_available():
        return {"dtype": torch.float32}, "fp32"
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    launch = Launch.current()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if not sharded:
        kwargs["device_map"] = {"": launch.local_rank if launch else 0}
    precision = str(dtype).removeprefix("torch.")
    if quant != "none":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype, **({"bnb_4bit_quant_storage": dtype} if sharded else {}))
            if quant == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
        precision = f"{quant} base, {precision} LoRA"
    return kwargs, precision


def describe(model: Any, quant: str, backend: str) -> LoadDescription:
    """What ``model`` actually is: its device and the dtype its floating-point weights compute in."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return LoadDescription(str(model.device), str(dtype).removeprefix("torch."), quant, backend)


def attach_adapter(base: Any, adapter_dir: Path, trainable: bool = False) -> Any:
    from peft import PeftModel

    tolerate_old_torchao()
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=trainable)
    return model if trainable else model.eval()


@dataclass(frozen=True)
class HFBackend:
    name: str = "hf"

    def load(self, model_path: Path, config: TrainConfig, start: Path | None = None) -> Loaded:
        from transformers import AutoModelForCausalLM

        kwargs, precision = from_pretrained_kwargs(config.quant, sharded(config))
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
        if config.quant != "none" and not sharded(config):  # TRL prepares sharded QLoRA itself, without fp32 upcasts
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
        if start is not None:
            return Loaded(attach_adapter(model, start, trainable=True), None, precision)
        return Loaded(model, lora_config(config), precision)

    def load_for_inference(self, model_path: Path, adapter_dir: Path, config: TrainConfig) -> InferenceModel:
        from transformers import AutoModelForCausalLM

        kwargs, _ = from_pretrained_kwargs(config.quant)
        model = attach_adapter(AutoModelForCausalLM.from_pretrained(model_path, **kwargs), adapter_dir)
        return InferenceModel(model, describe(model, config.quant, self.name))

    def generating(self, model: Any) -> ContextManager[None]:
        return eval_mode(model)

    def ready_for(self, method: str) -> None:
        """transformers + peft need nothing more."""


@dataclass(frozen=True)
class UnslothBackend:
    """Unsloth's kernels and offloaded gradient checkpointing: the same LoRA in less time and memory.

    Unsloth is at its fastest with ``--dropout 0``; other values train correctly, a little slower.
    """

    name: str = "unsloth"

    def load(self, model_path: Path, config: TrainConfig, start: Path | None = None) -> Loaded:
        import torch
        from unsloth import FastLanguageModel

        checkpointing: str | bool = "unsloth" if config.gradient_checkpointing else False
        model, _ = FastLanguageModel.from_pretrained(
            model_name=str(model_path), max_seq_length=config.max_length, dtype=None,
            load_in_4bit=config.quant == "4bit", load_in_8bit=config.quant == "8bit",
            load_in_16bit=config.quant == "none", use_gradient_checkpointing=checkpointing, random_state=config.seed)
        targets: Any = "all-linear" if config.target_modules == ("all-linear",) else list(config.target_modules)
        if start is not None:  # a saved adapter on Unsloth's patched base, as its docs load one to train further
            model = attach_adapter(model, start, trainable=True)
        else:
            model = FastLanguageModel.get_peft_model(
                model, r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets,
                use_gradient_checkpointing=checkpointing, random_state=config.seed)
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        base = f"{config.quant} base, {dtype} LoRA" if config.quant != "none" else dtype
        return Loaded(model, None, f"{base} (unsloth)")

    def load_for_inference(self, model_path: Path, adapter_dir: Path, config: TrainConfig) -> InferenceModel:
        """The base as training loaded it, the saved adapter attached, then Unsloth's inference mode (its
        fast generation path; ``disable_adapter`` still gives the base model)."""
        from unsloth import FastLanguageModel

        base, _ = FastLanguageModel.from_pretrained(
            model_name=str(model_path), max_seq_length=config.max_length, dtype=None,
            load_in_4bit=config.quant == "4bit", load_in_8bit=config.quant == "8bit",
            load_in_16bit=config.quant == "none")
        model = attach_adapter(base, adapter_dir)
        FastLanguageModel.for_inference(model)
        return InferenceModel(model, describe(model, config.quant, self.name))

    def ready_for(self, method: str) -> None:
        """Unsloth's documented DPO recipe patches TRL's DPOTrainer first (PatchDPOTrainer; newer releases patch
        TRL's trainers on import and may no longer export it)."""
        if method == "dpo":
            import unsloth

            patch = getattr(unsloth, "PatchDPOTrainer", None)
            if patch is not None:
                patch()

    @contextlib.contextmanager
    def generating(self, model: Any) -> Iterator[None]:
        """Unsloth's inference switch, and its training switch after (its documented pairing)."""
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
        try:
            yield
        finally:
            FastLanguageModel.for_training(model)


UNSLOTH_INSTALL = 'pip install "jupyter-finetune[unsloth]"'
GPU_INSTALL = 'pip install "jupyter-finetune[gpu]"'


def unsloth_problems(cuda: bool) -> list[str]:
    """Why unsloth cannot run here (empty if it can), read from package metadata without importing it."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    problems = [] if cuda else ["this kernel has no CUDA GPU (unsloth trains on NVIDIA GPUs)"]
    try:
        wanted = [Requirement(r) for r in requires("unsloth") or []]
    except PackageNotFoundError:
        return [*problems, f"unsloth is not installed ({UNSLOTH_INSTALL})"]
    for req in wanted:
        if req.name not in _PINNED or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            have = version(req.name)
        except PackageNotFoundError:
            problems.append(f"unsloth {version('unsloth')} needs {req} (not installed)")
            continue
        if not req.specifier.contains(have, prereleases=True):
            problems.append(f"unsloth {version('unsloth')} needs {req.name}{req.specifier} ({have} is installed)")
    return problems


_PINNED = ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "unsloth_zoo", "unsloth-zoo")
"""The libraries whose versions decide whether unsloth's patches apply; its other requirements do not."""


def unsloth_blockers(cuda: bool) -> list[str]:
    """``unsloth_problems``, then (only if there are none) the import itself, done now, before TRL builds
    a trainer, so unsloth's patches apply."""
    problems = unsloth_problems(cuda)
    if problems:
        return problems
    try:
        import unsloth  # noqa: F401
    except Exception as e:  # unsloth checks drivers and versions at import and raises many kinds of error
        return [f"import unsloth failed: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"]
    return []


def select_backend(config: TrainConfig, *, training: bool = True) -> tuple[Backend, str]:
    """The backend to use and, in words, why; refuses settings this machine cannot run.

    ``auto`` takes unsloth on an NVIDIA GPU where it is installed and importable, and hf otherwise;
    an explicit ``unsloth`` that cannot run is an error that says why, never a silent fallback.
    ``training=False`` skips what only training needs (TRL's CPU loss).
    """
    cuda = cuda_available()
    if config.quant != "none" and not cuda:
        raise ConfigError(f"--quant {config.quant} needs an NVIDIA GPU (bitsandbytes); this kernel has none. "
                          "Use --quant none on CPU.")
    if training and config.gpus > 1:
        return _data_parallel(config, cuda)
    if config.quant != "none" and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"--quant {config.quant} needs bitsandbytes: {GPU_INSTALL} "
                          f"(or {UNSLOTH_INSTALL}), then restart the kernel")
    if config.backend == "unsloth":
        problems = unsloth_blockers(cuda)
        if problems:
            fix = ("run on an NVIDIA GPU (Colab or Kaggle: pick a GPU runtime)" if not cuda else
                   f"in a fresh environment, {UNSLOTH_INSTALL}")
            raise ConfigError("--backend unsloth cannot run here:\n  - " + "\n  - ".join(problems)
                              + f"\nFix: {fix}; or use --backend auto (or hf) to train with transformers + peft")
        return UnslothBackend(), f"unsloth: CUDA GPU, {_weights(config)}"
    if not cuda:
        if training:
            _check_trl_on_cpu()
        return HFBackend(), "hf: no CUDA GPU, so transformers + peft LoRA in fp32 on CPU"
    if config.backend == "auto" and importlib.util.find_spec("unsloth") is not None:
        why_not = unsloth_blockers(cuda)
        if not why_not:
            return UnslothBackend(), f"unsloth: CUDA GPU with unsloth installed, {_weights(config)}"
        return HFBackend(), f"hf: unsloth is installed but cannot run ({'; '.join(why_not)}), {_weights(config)}"
    return HFBackend(), f"hf: CUDA GPU, {_weights(config)}"


def _data_parallel(config: TrainConfig, cuda: bool) -> tuple[Backend, str]:
    """hf for several processes, after refusing what cannot run: more GPUs than visible, unsloth (one GPU
    only in this package: its multi-GPU mode is not verified with our launch), 8-bit weights under FSDP."""
    from ..models.gpus import visible_gpus

    n, strategy = config.gpus, config.strategy
    visible = visible_gpus()
    if cuda and n > visible and Launch.current() is None:  # launched: the launcher has placed its processes
        raise ConfigError(f"--gpus {n}, but this kernel sees {visible} GPU{'s' * (visible != 1)}: use --gpus "
                          f"{visible} (or --gpus all), or run the exported script (%ft_export RUN --to script) "
                          "on a machine with more")
    if config.backend == "unsloth":
        raise ConfigError(f"--backend unsloth trains on one GPU here; with --gpus {n} use --backend hf (or auto), "
                          "which trains through accelerate, or --gpus 1 to keep unsloth")
    if config.quant == "8bit" and strategy == "fsdp":
        raise ConfigError("--quant 8bit cannot be sharded by FSDP (bitsandbytes 8-bit weights): use --quant 4bit "
                          "(QLoRA under FSDP) or --strategy ddp")
    how = "DDP, a whole copy on each" if strategy == "ddp" else "FSDP, weights sharded across them"
    if not cuda and strategy == "fsdp":  # accelerate would quietly train CPU processes as DDP
        raise ConfigError("--strategy fsdp shards the model across GPUs, and this kernel has none: accelerate's CPU "
                          "processes cannot shard; use --strategy ddp here")
    if not cuda:
        _check_trl_on_cpu()
        return HFBackend(), (f"hf: no CUDA GPU, so {n} CPU processes (gloo) through accelerate ({how}): this "
                             "checks the multi-process path, it is no faster than one process")
    return HFBackend(), f"hf: {n} GPUs data-parallel through accelerate ({how}), {_weights(config)}"


def select_inference_backend(config: TrainConfig, trained_with: str) -> tuple[Backend, TrainConfig, str]:
    """How to load a finished run for evaluation and chat: its own backend and quantization where this
    machine can run them, chosen by ``select_backend`` as training chose; the config to load with; and a
    note saying how that differs from training ("" when it does not).

    A run trained on a GPU with 4/8-bit weights is not refused on a machine without CUDA or bitsandbytes:
    its adapter is plain LoRA, so it is loaded on the full-precision base (fp32 on CPU) with a note that
    answers may differ slightly from the quantized model it was trained on. A run trained with unsloth
    uses unsloth again where it can run here, and hf (with the reason) where it cannot.
    """
    notes = []
    if config.quant != "none" and not (cuda_available() and importlib.util.find_spec("bitsandbytes")):
        why = "no CUDA GPU" if not cuda_available() else "no bitsandbytes"
        notes.append(f"trained with --quant {config.quant}, but this kernel has {why}: loaded on the full-precision "
                     "base (answers may differ slightly from the quantized model)")
        config = replace(config, quant="none")
    config = replace(config, backend="auto" if trained_with == "unsloth" else "hf")
    backend, reason = select_backend(config, training=False)
    if backend.name != trained_with and trained_with in ("hf", "unsloth"):
        notes.append(f"trained with {trained_with}; {reason}")
    return backend, config, "; ".join(notes)


def _weights(config: TrainConfig) -> str:
    return {"none": "16-bit base weights", "4bit": "4-bit base weights (QLoRA)", "8bit": "8-bit base weights"}[
        config.quant]


def _check_trl_on_cpu() -> None:
    """TRL before 1.16 computes the loss with a Triton kernel that has no CPU driver."""
    from importlib.metadata import version

    from packaging.version import Version

    import trl.trainer.utils as trl_utils

    if Version(version("trl")) < Version("1.16") and hasattr(trl_utils, "add_fused_lm_head"):
        raise ConfigError(f"TRL {version('trl')} cannot train on CPU (its fused loss needs a GPU Triton driver); "
                          "run pip install 'trl>=1.16' for CPU training")
