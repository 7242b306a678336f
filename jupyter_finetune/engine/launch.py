"""How a run's data-parallel processes are started: accelerate's own launcher, never one of ours.

The notebook's kernel may already hold CUDA, and a process that has touched CUDA cannot fork
workers that use it (``notebook_launcher`` refuses), so a multi-GPU run always starts fresh
processes with ``accelerate launch`` (torchrun underneath) and supervises them from the kernel
(engine.supervise). The same accelerate config file goes into an exported script folder
(export.script), so a cluster runs exactly what the notebook ran.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.gpus import ALL_GPUS, gpu_count
from .config import ConfigError, TrainConfig

FSDP_CONFIG = {
    # accelerate's FSDP plugin as peft documents it for LoRA/QLoRA: one unit per decoder layer, weights
    # loaded once and broadcast (host RAM holds one copy, not one per GPU), the adapter saved whole.
    "fsdp_version": 2,
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "fsdp_cpu_ram_efficient_loading": True,
    "fsdp_offload_params": False,
    "fsdp_reshard_after_forward": True,
    "fsdp_state_dict_type": "FULL_STATE_DICT",
    "fsdp_activation_checkpointing": False,
}


@dataclass(frozen=True)
class Launch:
    """This process's place in a launched job, read from the variables torchrun sets."""

    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "Launch | None":
        """None outside a multi-process launch (a notebook, a plain ``python train.py``)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world < 2:
            return None
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def sharded(config: TrainConfig) -> bool:
    """Whether this process is one of several that shard the model (FSDP): it then loads, checkpoints and
    validates differently (engine.backends, engine.job)."""
    return config.strategy == "fsdp" and Launch.current() is not None


def worker_count(value: int | str | None) -> int | None:
    """``--gpus`` for training: a number, or ``all`` for every GPU this kernel sees (None: not given)."""
    if value is None:
        return None
    count = gpu_count(value)
    if count == 0 and value == ALL_GPUS:
        raise ConfigError("--gpus all: this kernel sees no GPU; leave --gpus out to train here, or give a number "
                          "to check the multi-process path with that many CPU processes")
    return count


def accelerate_config(processes: int, strategy: str, machines: int = 1) -> dict[str, Any]:
    """accelerate's config file for ``processes`` processes in all over ``machines``.

    Both strategies launch through torchrun (accelerate's MULTI_GPU/FSDP types): on a machine
    without CUDA that gives gloo CPU processes, where accelerate's own ``--cpu`` would need MPI.
    Mixed precision stays "no" here because the Trainer sets bf16/fp16 itself from the GPU.
    """
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "FSDP" if strategy == "fsdp" else "MULTI_GPU",
        "num_processes": processes, "num_machines": machines, "machine_rank": 0, "gpu_ids": "all",
        "mixed_precision": "no", "rdzv_backend": "static", "same_network": True, "use_cpu": False,
        "main_training_function": "main", "downcast_bf16": "no",
    }
    if strategy == "fsdp":
        config["fsdp_config"] = dict(FSDP_CONFIG)
    return config


def write_accelerate_config(path: Path, config: TrainConfig) -> None:
    """The config file of ``config``'s processes, as the launch reads it and as an exported folder keeps it."""
    path.write_text(json.dumps(accelerate_config(config.gpus, config.strategy), indent=2) + "\n", encoding="utf-8")


def free_port() -> int:
    """A port for the rendezvous: two runs at once (or a run beside a notebook's own job) must not share 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(config_file: Path, config: TrainConfig, script_args: list[str]) -> list[str]:
    """The ``accelerate launch`` command that starts ``config.gpus`` processes of ``jupyter_finetune.worker``."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
            "--num_processes", str(config.gpus), "--main_process_port", str(free_port()),
            "--module", "jupyter_finetune.worker", *script_args]
