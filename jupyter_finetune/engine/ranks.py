"""What a training process does differently when it is one of several (data-parallel, engine.launch).

Every rank trains; rank 0 alone writes the run store and reports. Decisions that only one rank can
take (a stop request read from the run folder, a validation's early stop, the checkpoint clock)
must be taken by all at the same step, or the others would wait forever in the next all-reduce:
``AgreeOnControl`` all-reduces the Trainer's control flags at each step end and after each evaluation.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import psutil
from transformers import TrainerCallback

from ..runs import Run

SUPERVISOR_PID = "JUPYTER_FINETUNE_SUPERVISOR"
"""The variable holding the pid of the kernel that launched the workers (absent for a script on a cluster)."""


class AgreeOnControl(TrainerCallback):
    """A flag raised on any rank (stop, save, evaluate) is raised on every rank. Added last, so it sees
    what every other callback decided."""

    def on_step_end(self, args, state, control, **kwargs):
        self._agree(control, ("should_training_stop", "should_save", "should_evaluate"))

    def on_evaluate(self, args, state, control, **kwargs):
        self._agree(control, ("should_training_stop", "should_save"))

    @staticmethod
    def _agree(control: Any, names: tuple[str, ...]) -> None:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        flags = torch.tensor([int(bool(getattr(control, n))) for n in names], dtype=torch.int32, device=device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        for name, raised in zip(names, flags.tolist()):
            setattr(control, name, bool(raised))


def leave_process_group() -> None:
    """Tears this process's part of the group down once training is over: gloo threads still running when the
    interpreter exits can abort it ("terminate called without an active exception"), and torchrun then fails
    a run that had finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class SupervisorLink(TrainerCallback):
    """Rank 0's ear for the notebook that launched it: a stop request left in the run folder (the Stop
    button, ``%ft_stop``, an interrupt), or the kernel gone (killed, restarted), which stops the run at
    the next step with a checkpoint, so that ``--resume`` continues it and no worker is left behind."""

    def __init__(self, run: Run, stop: Callable[[str], None]):
        self.run, self.stop = run, stop
        """Asks the job to stop at this step end, saying why."""
        supervisor = os.environ.get(SUPERVISOR_PID)
        self.supervisor = int(supervisor) if supervisor and supervisor.isdigit() else None

    def on_step_end(self, args, state, control, **kwargs):
        if self.run.stop_requested():
            self.stop("on request")
        elif self.supervisor is not None and not psutil.pid_exists(self.supervisor):
            self.stop(f"because the notebook kernel that launched it (pid {self.supervisor}) exited")
