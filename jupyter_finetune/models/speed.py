"""Training time from FLOPs: the one model behind the data report's local time and %ft_plan's.

Time = non-padding tokens x FLOPs per token / the device's sustained FLOP/s. Attention's own
FLOPs (the sequence-squared term) are left out: at the lengths fine-tuning uses they are a few
percent of the weights' share.
"""

from __future__ import annotations

from dataclasses import dataclass

from .aliases import ALIASES
from .gpus import Gpu, cpu_cores, cpu_device, gpu_table, kernel_gpu
from .memory import METHODS

MFU = 0.35
"""Assumed model FLOPs utilisation on a GPU: a typical share of peak for single-GPU LoRA with HF + PEFT."""
MEASURED_CPU_TOKENS_PER_S = 131
"""LoRA r16 on SmolLM2-135M in fp32, 2 CPU cores, no checkpointing: the README's quickstart run (30 steps
of 8 examples, non-padding tokens as TRL counts them; examples/quickstart.ipynb, torch CPU, TRL 1.x)."""
REFERENCE_FORWARD = 2
"""DPO's reference forward pass, in FLOPs per token per parameter: 2N, the forward alone, on every token of
both answers. Against LoRA's forward and backward (4N) that is half as much again, so a DPO epoch takes
2 x 1.5 = 3x a LoRA SFT epoch on the same examples (2 x 8/6 = 2.67x with gradient checkpointing, whose
recomputation the reference does not pay); against full fine-tuning's 6N it would be a third."""


def flops_per_token(parameters: int, method: str = "lora", checkpointing: bool = False) -> float:
    """Training FLOPs per token for N parameters.

    Forward 2N. The backward pass costs 2N for the gradients of the activations (needed through
    every layer, frozen or not) and 2N for the gradients of the weights: full fine-tuning pays
    both (6N in all), LoRA only the first, since frozen weights get no gradient (4N). Checkpointing
    recomputes the forward (+2N). The adapters' own work, 6 FLOPs per adapter parameter, is left
    out: for r16 all-linear it is 6 x 4.9M = 29M per token against 4N = 538M on SmolLM2-135M
    (5%), and 6 x 42M against 4 x 8.0B (0.8%) on Llama-3-8B, below this estimate's other errors;
    and the data report, which has no rank yet, then agrees with the planner.

    DPO and ORPO train LoRA on pairs: a token is a token of either answer's sequence (the caller counts
    both, models.memory.PAIR_SEQUENCES), at LoRA's 4N. DPO adds its reference's forward pass of every
    token (``REFERENCE_FORWARD``), never checkpointed since nothing is saved for a backward pass.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    factor = (6 if method == "full" else 4) + (2 if checkpointing else 0)
    return (factor + (REFERENCE_FORWARD if method == "dpo" else 0)) * parameters


CPU_FLOPS_PER_CORE = MEASURED_CPU_TOKENS_PER_S * flops_per_token(ALIASES["smollm2-135m"].parameters) / 2
"""About 35 GFLOP/s a core, calibrated so that the measured run above is reproduced exactly."""


@dataclass(frozen=True)
class Compute:
    """Where training runs, and the FLOP/s it sustains there."""

    name: str
    flops_per_second: float

    def seconds(self, tokens: float, flops_per_token: float) -> float:
        return tokens * flops_per_token / self.flops_per_second


DDP_EFFICIENCY_NVLINK = 0.9
"""Data-parallel speed-up over one GPU, divided by the GPUs: assumed, until bench/bench_ddp.py measures it on a
GPU machine. DDP on NVLink (A100/H100 class): issue 20's target per added GPU. LoRA all-reduces only the
adapters' gradients (168 MB in fp32 for Llama-3-8B at r16), which NVLink moves in about a millisecond, hidden
behind the backward pass; what is lost is mostly each step waiting for the slowest GPU's micro-batch."""
DDP_EFFICIENCY_PCIE = 0.8
"""DDP on PCIe cards (T4, L4, A10G; Kaggle's 2 x T4): the gradients cross PCIe, often through the host at
a few GB/s, and these slower GPUs make the per-step synchronisation a larger share of the step."""
FSDP_EFFICIENCY_NVLINK = 0.8
"""FSDP all-gathers every block's weights in the forward pass and again in the backward one, and
reduce-scatters the gradients: the whole model crosses the link twice a step, not only the gradients."""
FSDP_EFFICIENCY_PCIE = 0.6
"""FSDP over PCIe: the same traffic at a tenth of NVLink's bandwidth or less; only large micro-batches hide it."""


def scaling_efficiency(gpu: Gpu, gpus: int, sharded: bool) -> float:
    """Speed-up of ``gpus`` data-parallel GPUs over one, divided by ``gpus`` (1 for one GPU)."""
    if gpus == 1:
        return 1.0
    if sharded:
        return FSDP_EFFICIENCY_NVLINK if gpu.nvlink else FSDP_EFFICIENCY_PCIE
    return DDP_EFFICIENCY_NVLINK if gpu.nvlink else DDP_EFFICIENCY_PCIE


def gpu_compute(gpu: Gpu) -> Compute:
    return Compute(gpu.name, gpu.bf16_tflops * 1e12 * MFU)


def cpu_compute(cores: int | None = None) -> Compute:
    """This process's CPU cores (those it may run on), or ``cores`` of the calibrated kind."""
    if cores is None:
        cores = cpu_cores()
    return Compute(cpu_device(cores), CPU_FLOPS_PER_CORE * cores)


def local_compute() -> Compute | None:
    """Where training in this kernel would run: its GPU, or its CPU if it has none; None for a GPU
    the table does not know (its speed is then unknown)."""
    import torch

    if not torch.cuda.is_available():
        return cpu_compute()
    gpu = kernel_gpu(gpu_table())
    return gpu_compute(gpu) if gpu else None
