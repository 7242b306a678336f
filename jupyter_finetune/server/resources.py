"""What the machine has to train with: GPUs (NVML, else nvidia-smi), CPU and RAM.

Every probe may block (NVML initialisation, a subprocess), so the handler runs ``probe`` in a thread
pool. No GPU is an ordinary answer, ``"gpus": []``, never an error. The CPU percent covers the time
since the previous request (psutil's own sampling), so a poller's first answer reads 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import psutil

MIB = 1024 ** 2
SMI_QUERY = "index,name,memory.used,memory.total,utilization.gpu"


def probe() -> dict[str, Any]:
    """``gpus`` (index, name, memory_used/memory_total in bytes, utilization in % or null), ``cpu``, ``memory``."""
    memory = psutil.virtual_memory()
    return {"gpus": gpus(), "cpu": {"count": os.cpu_count(), "percent": psutil.cpu_percent(interval=None)},
            "memory": {"used": memory.total - memory.available, "total": memory.total}}


def gpus() -> list[dict[str, Any]]:
    found = nvml_gpus()
    return found if found is not None else smi_gpus() or []


def nvml_gpus() -> list[dict[str, Any]] | None:
    """The GPUs as NVML sees them; None when pynvml is not installed or finds no driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        return [_nvml_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _nvml_gpu(pynvml: Any, index: int) -> dict[str, Any]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = pynvml.nvmlDeviceGetName(handle)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except pynvml.NVMLError:  # some devices (MIG slices, vGPUs) do not report it
        utilization = None
    return {"index": index, "name": name.decode() if isinstance(name, bytes) else name,
            "memory_used": int(memory.used), "memory_total": int(memory.total), "utilization": utilization}


def smi_gpus() -> list[dict[str, Any]] | None:
    """The GPUs as ``nvidia-smi`` lists them; None when it is not on PATH or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_smi(out)


def parse_smi(out: str) -> list[dict[str, Any]]:
    """One GPU per CSV line; a field nvidia-smi cannot read ("[N/A]") becomes null."""
    found = []
    for line in out.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        index, *name, used, total, utilization = fields
        found.append({"index": int(index), "name": ",".join(name), "memory_used": _mib(used),
                      "memory_total": _mib(total), "utilization": _float(utilization)})
    return found


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _mib(text: str) -> int | None:
    value = _float(text)
    return None if value is None else int(value * MIB)
