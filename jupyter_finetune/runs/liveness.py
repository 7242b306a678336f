"""Whether the process a run's status names can still be its trainer.

A pid alone says little once a run store outlives its machine: after a Colab or Kaggle VM restart
with the store on Drive, the saved pid belongs to some other process, or to none. So a training
process records who it is (host, boot id, pid and the pid's start time) and a heartbeat, and a
reader trusts ``running`` only when that same process is still there, or, when it cannot look
(another machine shares the store), when the heartbeat is fresh.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import psutil

HEARTBEAT_S = 30.0
"""How often a training process refreshes its heartbeat, whatever its step time."""
STALE_S = 10 * 60.0
"""A heartbeat older than this means the trainer is gone: twenty missed beats, longer than any pause
of a healthy process (a checkpoint save, an evaluation), short enough to free a run soon after a VM dies."""
_START_TOLERANCE_S = 1.0
"""Process start times are read from /proc in clock ticks: the same process reads within this."""


def boot_id() -> str | None:
    """This boot of this machine (Linux); a restarted VM with the same host name gets a new one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Trainer:
    """What identifies a training process beyond its pid: a pid is reused, a pid with its start time is not."""

    host: str
    boot_id: str | None
    pid: int
    started: float
    """The process's start time (seconds since the epoch), as the OS reports it."""

    @classmethod
    def current(cls) -> "Trainer":
        return cls(socket.gethostname(), boot_id(), os.getpid(), psutil.Process().create_time())

    def fields(self) -> dict[str, Any]:
        """Its part of status.json."""
        return {"host": self.host, "boot_id": self.boot_id, "pid": self.pid, "proc_start": self.started}

    def on_this_machine(self) -> bool:
        return self.host == socket.gethostname() and (self.boot_id is None or self.boot_id == boot_id())

    def exists(self) -> bool:
        """This very process still runs (same pid, same start time)."""
        try:
            started = psutil.Process(self.pid).create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return False
        return abs(started - self.started) <= _START_TOLERANCE_S


def still_training(status: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether an active status (queued or running), its types checked by the run store, can still be true.

    On the trainer's own machine and boot, the process itself decides. Elsewhere, or for a status
    written before processes recorded their start time, the heartbeat must be fresh (and a pid on
    this machine must at least exist).
    """
    pid = status.get("pid")
    if pid is None or pid <= 0:
        return False
    beat = status.get("heartbeat") or status.get("updated")
    fresh = beat is not None and (now or time.time()) - beat < STALE_S
    host, started = status.get("host"), status.get("proc_start")
    if host is None:  # written before 0.2: a pid and its last update are all there is
        return fresh and psutil.pid_exists(pid)
    trainer = Trainer(host, status.get("boot_id"), pid, started or 0.0)
    if trainer.on_this_machine():
        return trainer.exists() if started is not None else fresh and psutil.pid_exists(pid)
    return fresh
