"""A multi-GPU run seen from the notebook: ``accelerate launch`` starts the workers, the kernel watches.

Why worker processes and not ``notebook_launcher``: a kernel that has touched CUDA (an earlier
evaluation, a plan that read the GPU) cannot fork processes that use it, and a kernel crash would
take forked workers with it mid-step. So the kernel starts ``accelerate launch`` in a session of
its own, reads what rank 0 writes to the run store (metrics.jsonl, status.json) and relays it to the
dashboard as the events one process would have sent; it asks for a stop through the run folder
(engine.ranks.SupervisorLink). torchrun stops every worker when one fails; the kernel then marks
the run failed with that worker's message, and kills whatever is left of the process tree.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from typing import Any

import psutil

from ..runs import Run
from ..runs.readers import CachedReader
from .job import TrainJob
from .launch import launch_command, write_accelerate_config
from .ranks import SUPERVISOR_PID

POLL_S = 0.2
"""How often the kernel reads the run store while workers train: the dashboard's and Stop's delay."""
GRACE_S = 10.0
"""How long workers get to exit after SIGTERM before SIGKILL."""
_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+).*?traceback\s*:\s*([^\n]*)", re.S)
"""torchrun's summary of the first worker that failed."""


class WorkerJob(TrainJob):
    """A TrainJob whose training happens in ``config.gpus`` worker processes; same interface, same run store."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.listeners.remove(self._record)  # rank 0 records; this process only relays
        self.pids: list[int] = []
        """The launcher's and the workers' pids, once seen."""
        self._seen: dict[int, psutil.Process] = {}

    def stop(self) -> None:
        self.run.request_stop()
        super().stop()

    def _begin(self) -> None:
        """Running from now, under this kernel's pid until rank 0 takes the run over (its own status and attempt)."""
        with self._status_lock:
            self.run.set_status("running", step=self._step)

    def _fit(self) -> None:
        self.run.clear_worker_records()
        write_accelerate_config(self.run.launch_config_file, self.config)
        command = launch_command(self.run.launch_config_file, self.config,
                                 ["--run", self.run.name, "--runs-dir", str(self.run.path.parent)])
        env = {**os.environ, SUPERVISOR_PID: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        env.pop("WORLD_SIZE", None)
        with open(self.run.workers_log, "ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            launcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)  # the notebook's interrupt is ours to relay
        relay = _Relay(self)
        try:
            while launcher.poll() is None:
                self._remember(launcher.pid)
                relay.forward()
                self._between_steps()
                time.sleep(POLL_S)
            relay.forward()
        finally:
            self._end_all(launcher)
        self._conclude(launcher.returncode)

    def _remember(self, pid: int) -> None:
        """Every process of the tree, kept while it is visible: a worker outliving the launcher is still found."""
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                self._seen.setdefault(process.pid, process)
        except psutil.NoSuchProcess:
            return
        self.pids = sorted(self._seen)

    def _end_all(self, launcher: subprocess.Popen) -> None:
        """No process of this run outlives it: SIGTERM, then SIGKILL after GRACE_S."""
        self._remember(launcher.pid)
        alive = [p for p in self._seen.values() if p.is_running()]
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended between looking and signalling
                process.terminate()
        _, alive = psutil.wait_procs(alive, timeout=GRACE_S)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=GRACE_S)
        if launcher.poll() is None:
            launcher.wait(GRACE_S)

    def _conclude(self, returncode: int) -> None:
        status = self.run.status()
        self._step = status.get("step") or self._step
        ended = status.get("status") in ("completed", "stopped")
        if returncode == 0 and ended:
            self._finish(status["status"], status.get("message") or "", self.run.adapter_dir)
        else:
            self._finish("failed", self._failure(returncode), None)

    def _failure(self, returncode: int) -> str:
        """The worker that failed first, as torchrun observed it, in its own words where it left them (the
        others' errors are mostly their broken connections to it); else the launcher's exit code."""
        n, log = self.config.gpus, self.run.workers_log
        errors = self.run.worker_errors()
        found = _ROOT_CAUSE.search(log.read_text(errors="replace") if log.exists() else "")
        first = int(found.group(1)) if found else next(iter(errors), None)
        if first in errors:
            return f"worker {first} of {n} failed: {errors[first]}; the others were stopped (output: {log})"
        if found:
            _, code, why = found.groups()
            return (f"worker {first} of {n} died (exit code {code}: {why.strip()}); the others were stopped "
                    f"(output: {log})")
        if returncode == 0:
            return f"the workers exited without finishing the run (output: {log})"
        return f"the launcher exited with code {returncode} before the run ended (output: {log})"


class _Relay:
    """Rank 0's records, read back from the run store and sent to the job's listeners as events.

    It reads as the server's poller does (a CachedReader and ``metrics_page``), so each poll parses only
    what rank 0 appended since the last one, however long the run."""

    def __init__(self, job: WorkerJob):
        self.job = job
        self.run = Run(job.run.path, reader=CachedReader())
        self.attempt: int | None = None
        self.last = job._step
        """The step of the newest record sent (a resume's start before any)."""
        self.sent: set[tuple[int, bool]] = set()
        """(step, validation?) of the records sent at step ``last``: a validation comes after its step's log."""

    def forward(self) -> None:
        status = self.run.status()
        attempt = status.get("attempt")
        if status.get("pid") == os.getpid() or attempt is None or status.get("max_steps") is None:
            return  # rank 0 has not taken the run over yet
        if self.attempt is None:
            self.attempt = attempt
            self.job._emit({"event": "start", "run": self.run.name, "max_steps": status["max_steps"],
                            "step": status.get("step") or 0, "epochs": self.job.config.epochs,
                            "config": self.job.config.to_dict(), "time": time.time()})
        for record in self.run.metrics_page(self.last - 1, self.attempt).records:
            key = (record["step"], "validation" in record)
            if record.get("attempt") != self.attempt or key in self.sent:
                continue  # an earlier attempt's, or sent at the last poll
            if record["step"] > self.last:
                self.last, self.sent = record["step"], set()
            self.sent.add(key)
            self.job._emit(_event(record))


def _event(record: dict[str, Any]) -> dict[str, Any]:
    """The event a metrics record was written from (TrainJob._record)."""
    if "validation" in record:
        return {"event": "validation", "step": record["step"], "time": record["time"], **record["validation"]}
    return {"event": "log", **{k: v for k, v in record.items() if k != "attempt"}}
