"""Common training GPUs: memory, speed and an hourly price, from a dated table shipped with the package."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from ..errors import FinetuneError, InvalidValue
from .memory import GIB


class UnknownGpu(FinetuneError, ValueError):
    """A GPU name not in the table; the message lists the known ones."""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int
    """Total memory as torch.cuda.get_device_properties reports it."""
    bf16_tflops: float
    """Dense bf16 tensor-core peak (fp16 for the T4), before any utilisation factor."""
    usd_per_hour: float
    nvlink: bool = False
    """Several of them in one machine talk over NVLink (SXM boards); else over PCIe: slower data parallelism."""


@dataclass(frozen=True)
class GpuTable:
    as_of: str
    source: str
    note: str
    gpus: dict[str, Gpu]
    cpu_usd_per_core_hour: float
    """What an hour of one cloud vCPU costs: the price of training on a CPU."""

    def get(self, name: str) -> Gpu:
        """Case-insensitive, ignoring '-' and '_': ``a100-80``, ``A100_80`` and ``a10080`` all match."""
        wanted = _key(name)
        for gpu in self.gpus.values():
            if _key(gpu.name) == wanted:
                return gpu
        raise UnknownGpu(f"unknown GPU {name!r}: use one of {', '.join(self.gpus)}")

    def usd_per_hour(self, device: str) -> float | None:
        """The hourly price of a ``kernel_device`` name; None for a GPU the table does not know."""
        if device.startswith(CPU):
            cores = device.removeprefix(CPU).strip(", ").split(" ")[0]
            return self.cpu_usd_per_core_hour * int(cores) if cores.isdigit() else None
        try:
            return self.get(device).usd_per_hour
        except UnknownGpu:
            return None

    def match(self, device_name: str, memory_bytes: int) -> Gpu | None:
        """The table's entry for a CUDA device name ("Tesla T4", "NVIDIA A100-SXM4-40GB",
        "NVIDIA GeForce RTX 4090"): the entry named in it whose memory is nearest the device's."""
        named = _key(device_name)
        found = [gpu for gpu in self.gpus.values() if _key(gpu.name.split("-")[0]) in named]
        return min(found, key=lambda gpu: abs(gpu.memory_bytes - memory_bytes), default=None)


def _key(name: str) -> str:
    return name.upper().replace("-", "").replace("_", "").replace(" ", "")


@lru_cache(maxsize=1)
def gpu_table() -> GpuTable:
    raw = json.loads(files(__package__).joinpath("gpus.json").read_text())
    gpus = {name: Gpu(name, round(g["memory_gib"] * GIB), g["bf16_tflops"], g["usd_per_hour"], g.get("nvlink", False))
            for name, g in raw["gpus"].items()}
    return GpuTable(raw["as_of"], raw["source"], raw["note"], gpus, raw["cpu"]["usd_per_core_hour"])


CPU = "CPU"


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_device(cores: int) -> str:
    """How a CPU is named where training runs: "CPU, 2 cores" (``GpuTable.usd_per_hour`` reads it back)."""
    return f"{CPU}, {cores} cores"


def kernel_device() -> str:
    """Where this kernel trains, as a run records it: the table's name of its GPU ("T4"), the CUDA name of
    a GPU the table does not know, or "CPU, N cores"."""
    import torch

    if not torch.cuda.is_available():
        return cpu_device(cpu_cores())
    gpu = kernel_gpu(gpu_table())
    return gpu.name if gpu else torch.cuda.get_device_name(0)


def kernel_gpu(table: GpuTable) -> Gpu | None:
    """This kernel's own GPU if the table knows it: what the planner should answer for by default."""
    import torch

    if not torch.cuda.is_available():
        return None
    device = torch.cuda.get_device_properties(0)
    return table.match(device.name, device.total_memory)


ALL_GPUS = "all"


def visible_gpus() -> int:
    """The CUDA devices this kernel sees (CUDA_VISIBLE_DEVICES applied): 2 on a Kaggle T4 x2 notebook, 0 on a CPU."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_count(value: int | str) -> int:
    """``--gpus N`` or ``--gpus all`` as a number: all is every GPU this kernel sees, 0 where it sees none
    (the caller says what that means for it)."""
    if isinstance(value, int):
        return value
    if value == ALL_GPUS:
        return visible_gpus()
    if value.isdigit():
        return int(value)
    raise InvalidValue(f"--gpus {value!r}: give a number of GPUs or {ALL_GPUS}")
