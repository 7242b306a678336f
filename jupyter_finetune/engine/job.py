"""A training job: setup, fit, and a clean ending whatever happens.

A foreground job trains on the calling thread (so "Run all" waits for it): on CPUs a worker
thread trains 15-40% slower, because glibc serves its large tensors from fresh mmaps (page faults
every step) and libgomp throttles its spinning threads while the idle main thread's team exists.
An awaited cell keeps the kernel responsive by running the fit in a greenlet that hands control
to the event loop at each step end, so the dashboard's Stop button is handled. ``start`` runs
the job on a worker thread instead, for ``--background``. A stop request (button, %ft_stop,
the notebook's interrupt) ends training at the next step end, after which the adapter so far is
saved. Out-of-memory frees memory, keeps the kernel usable and marks the run failed with the
settings to lower.

A job can also be one rank of a data-parallel launch (engine.launch): every rank trains, rank 0 alone
writes the run store and reports, and the ranks agree on every stop (engine.ranks).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from ..data import FtDataset
from ..data.dataset import ValidationSplit
from ..models.oom import free_memory, is_out_of_memory
from ..models.peft_compat import tolerate_tensor_parallel_gap
from ..models.quiet import library_noise_off
from ..models.tokenizer import training_tokenizer
from ..runs import Run
from ..runs.checkpoints import ResumePoint
from ..runs.liveness import HEARTBEAT_S
from .backends import Backend, cuda_available
from .callbacks import CHECKPOINT_EVERY_S, CheckpointTimer, EventCallback
from .config import TrainConfig
from .events import Event, Listener
from .arguments import trainer_args
from .launch import Launch, sharded
from .preference import drop_reference_copy, preference_args, preference_trainer
from .ranks import AgreeOnControl, SupervisorLink, leave_process_group
from .validation import MakeValidator, ValidationCallback, ValidationPlan, validation_every


@dataclass(frozen=True)
class TrainResult:
    run: str
    status: str
    step: int
    message: str
    adapter: Path | None

    def __repr__(self) -> str:
        """One line: the dashboard above it has already shown the curves and the summary."""
        outcome = f"adapter in {self.adapter}" if self.adapter else self.message
        return f"<TrainResult {self.run}: {self.status} at step {self.step}, {outcome}>"


def sft_config(dataset: FtDataset, config: TrainConfig, output_dir: Path, split: ValidationSplit | None = None,
               validated: bool = False) -> Any:
    """The TRL SFTConfig for these settings: completion-only loss; the validation slice's loss once per
    epoch, or when ``validated`` at each validation (engine.validation asks for those evaluations); in a
    process of a launch, the data-parallel settings too."""
    from trl import SFTConfig

    split = split or dataset.validation_split(0, 0)
    return trainer_args(SFTConfig, config, output_dir, split, validated,
                        eval_steps=config.epoch_steps(len(split.train)), completion_only_loss=dataset.format != "text")


class TrainJob:
    """One run's training, on the calling thread or a worker thread, reporting to listeners and the run store."""

    def __init__(self, run: Run, dataset: FtDataset, config: TrainConfig, model_path: Path, backend: Backend,
                 listeners: list[Listener], resume: ResumePoint | None = None, callbacks: list[Any] | None = None,
                 note: str | None = None, split: ValidationSplit | None = None,
                 validator: MakeValidator | None = None, launch: Launch | None = None):
        self.run, self.dataset, self.config = run, dataset, config
        self.launch = launch
        """This process's rank when it is one of several; None when it trains alone."""
        self.main = launch is None or launch.main
        """Whether this process writes the run store and reports (rank 0, or a job alone)."""
        self.split = split or dataset.validation_split(0, 0)
        """The rows trained on and the validation slice carved from them (the test split is never read)."""
        self.make_validator = validator
        self.validation: ValidationCallback | None = None
        self.model_path, self.backend, self.resume = model_path, backend, resume
        self.note = note
        """What a resume must tell the user first (the checkpoint it starts from, any it passed over)."""
        self.attempt = 0
        self._status_lock = threading.Lock()  # the heartbeat thread writes status.json too
        self.listeners = [self._record, *listeners] if self.main else list(listeners)
        self.extra_callbacks = callbacks or []
        self.stop_requested = threading.Event()
        self.stop_reason = "on request"
        self.result: TrainResult | None = None
        self._step = resume.step if resume else 0
        self._finished = threading.Event()
        self._between_steps: Callable[[], None] = lambda: None

    def train(self) -> TrainResult:
        """Train on this thread until the end or a stop; the notebook's interrupt stops cleanly."""
        self._begin()
        with self._interrupt_stops():
            self._main()
        assert self.result is not None
        return self.result

    async def train_async(self, while_waiting: Callable[[], Awaitable[Any]] | None = None) -> TrainResult:
        """``train`` for an awaited cell: the event loop runs at each step end (Stop button, widgets),
        then ``while_waiting`` is awaited (a kernel that holds widget messages hands them over there)."""
        import asyncio

        from greenlet import getcurrent, greenlet

        loop_side = getcurrent()
        self._between_steps = loop_side.switch
        fit = greenlet(self._main)
        self._begin()
        with self._interrupt_stops():
            fit.switch()
            while not fit.dead:
                try:
                    await asyncio.sleep(0.005)  # long enough for the kernel to dispatch a waiting message
                    if while_waiting is not None:
                        await while_waiting()
                except asyncio.CancelledError:  # an interrupt that reached the loop instead of the handler
                    self.stop()
                fit.switch()
        assert self.result is not None
        return self.result

    def start(self) -> "TrainJob":
        """Train on a worker thread and return at once (``wait`` joins it)."""
        self._begin()
        threading.Thread(target=self._main, name=f"ft-train-{self.run.name}", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stop_requested.set()

    def _stop_because(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop_requested.set()

    def __repr__(self) -> str:
        """What ``%ft_train --background`` shows: the run, and how to reach its result."""
        state = repr(self.result) if self.result else "training; .wait() returns its TrainResult, .stop() ends it"
        return f"<TrainJob {self.run.name}: {state}>"

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self) -> TrainResult:
        """Block until the job ends; an interrupt (Ctrl-C, the notebook's stop) stops it cleanly.

        Waits on an Event, not Thread.join: a join interrupted by KeyboardInterrupt can leave the
        thread reported dead while it still runs (CPython before 3.13).
        """
        while True:
            try:
                if self._finished.wait(timeout=0.2):
                    break
            except KeyboardInterrupt:
                self.stop()
        assert self.result is not None
        return self.result

    @contextlib.contextmanager
    def _interrupt_stops(self) -> Iterator[None]:
        """While training on the main thread, SIGINT asks for a stop instead of raising mid-step."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda signum, frame: self.stop())
        try:
            yield
        finally:  # None: the handler was not set from Python; Python's own is the closest stand-in
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)

    @property
    def resume_from(self) -> Path | None:
        """The checkpoint this job continues from, if any."""
        return self.resume.checkpoint if self.resume else None

    def _begin(self) -> None:
        """A new attempt at this run: numbered, so that its records are told apart from a killed one's."""
        if not self.main:
            return
        self.attempt = self.run.begin_attempt()
        with self._status_lock:
            self.run.set_status("running", step=self._step, attempt=self.attempt)

    def _record(self, event: Event) -> None:
        if event["event"] == "log":
            self._step = event["step"]
            self.run.append_metrics({**{k: v for k, v in event.items() if k != "event"}, "attempt": self.attempt})
            with self._status_lock:
                self.run.set_status("running", step=event["step"], max_steps=event["max_steps"])
        elif event["event"] == "validation":
            kept = {k: v for k, v in event.items() if k not in ("event", "step", "time")}
            self.run.append_metrics({"step": event["step"], "validation": kept, "time": event["time"],
                                     "attempt": self.attempt})
        elif event["event"] == "start":
            with self._status_lock:
                self.run.set_status("running", step=event["step"], max_steps=event["max_steps"])

    def _emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def _main(self) -> None:
        try:
            with self._heartbeat():
                self._fit_or_fail()
        finally:
            if self.launch:
                leave_process_group()
            self._finished.set()

    @contextlib.contextmanager
    def _heartbeat(self) -> Iterator[None]:
        """Refreshes the run's heartbeat from a thread of its own, so a reader on another machine sharing
        the store can tell this process is alive through minutes without a log step."""
        if not self.main:
            yield
            return
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_S):
                with self._status_lock:
                    self.run.beat()

        thread = threading.Thread(target=beat, name=f"ft-heartbeat-{self.run.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _fit_or_fail(self) -> None:
        try:
            self._fit()
            return
        except Exception as exc:  # every failure must end as a readable run status, never a lost run
            message = self._oom_message(exc) if is_out_of_memory(exc) else f"{type(exc).__name__}: {exc}"
            if self.launch:
                self.run.write_worker_error(self.launch.rank, message, traceback.format_exc())
            if self.main:
                self.run.write_error(traceback.format_exc())
        free_memory()  # outside the except block: the traceback no longer pins the model
        self._finish("failed", message, None)

    def _fit(self) -> None:
        if self.resume and self.resume.finished:  # the Trainer would train one step past the end
            if not self.main:
                self._finish("completed", "", self.run.adapter_dir)
                return
            kept = self.run.kept_adapter()
            last = kept is not None and kept.step != self._step  # a better-scoring adapter stays in adapter/
            if kept is None or last:  # else adapter/ already holds this step's adapter, chosen by its score
                self.run.adopt_adapter(self.resume.checkpoint, last=last)
            where = (f"the last adapter saved to {self.run.last_adapter_dir}; the best-scoring one (step {kept.step})"
                     f" stays in {self.run.adapter_dir}" if last else f"adapter saved to {self.run.adapter_dir}")
            self._finish("completed", f"completed at step {self._step} (its last checkpoint holds every step); "
                         f"{where}", self.run.adapter_dir)
            return
        with library_noise_off():  # TRL's DPO reads a renamed transformers property at every step, not only at load
            trainer = self.build_trainer()
            trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
        self._step = trainer.state.global_step
        status = "stopped" if self.stop_requested.is_set() else "completed"
        why = (f"stopped at step {self._step} {self.stop_reason}" if status == "stopped" else
               self.validation.stopped_early if self.validation and self.validation.stopped_early else
               f"completed all {trainer.state.max_steps} steps")
        failed = f"; {self.validation.failed}" if self.validation and self.validation.failed else ""
        self._finish(status, f"{why}; {self._keep_adapters(trainer)}{failed}", self.run.adapter_dir)

    def _keep_adapters(self, trainer: Any) -> str:
        """The best-scoring adapter stays as adapter/, the last one beside it; says which is which."""
        best = self.validation.best if self.validation else None
        if best is None:
            trainer.save_model(str(self.run.adapter_dir))  # on every rank: FSDP gathers the weights to save them
            drop_reference_copy(self.run.adapter_dir)
            if self.main:
                self.run.drop_last_adapter()
            return f"adapter saved to {self.run.adapter_dir}"
        scored = f"{best.metric} {best.score:.3f}, the best of {self.validation.validations} validations"
        if best.step == self._step:
            self.run.drop_last_adapter()
            return f"the last adapter scored best ({scored}) and is kept in {self.run.adapter_dir}"
        self.run.keep_last_adapter(lambda path: trainer.save_model(str(path)))
        return (f"kept the adapter of step {best.step} ({scored}) in {self.run.adapter_dir}; the last one "
                f"(step {self._step}) is in {self.run.last_adapter_dir}")

    def _finish(self, status: str, message: str, adapter: Path | None) -> None:
        if self.main:
            with self._status_lock:
                self.run.set_status(status, step=self._step, message=message)
        self.result = TrainResult(self.run.name, status, self._step, message, adapter)
        self._emit({"event": "end", "status": status, "step": self._step, "message": message, "time": time.time()})

    def build_trainer(self) -> Any:
        """The trainer this job runs: TRL's SFTTrainer, or its preference trainer (public so that what
        training sees can be inspected)."""
        from transformers import PrinterCallback, set_seed

        set_seed(self.config.seed)
        if self.launch:
            tolerate_tensor_parallel_gap()
        tokenizer = training_tokenizer(self.model_path)
        start = self.run.start_adapter()
        loaded = self.backend.load(self.model_path, self.config, start)
        callback = EventCallback(self.run.name, self.listeners, self.stop_requested, self.config.to_dict(),
                                 between_steps=self._between_steps)
        timer = [] if self.config.save_steps else [CheckpointTimer(CHECKPOINT_EVERY_S)]
        link = [SupervisorLink(self.run, self._stop_because)] if self.launch and self.main else []
        callbacks = [*self.extra_callbacks, *link, *timer, callback]
        split, plan = self.split, self._validation_plan()
        if self.config.method == "sft":
            trainer = self._sft_trainer(loaded, tokenizer, callbacks)
        else:
            self.backend.ready_for(self.config.method)
            args = preference_args(self.config, self.run.checkpoints_dir, split, self._eval_every())
            trainer = preference_trainer(self.config, self.dataset, split, loaded.model, loaded.peft_config, args,
                                         tokenizer, callbacks, start)
        trainer.remove_callback(PrinterCallback)  # our listeners report progress
        if plan:
            self.validation = ValidationCallback(plan, self.run, tokenizer, self.backend.generating,
                                                 lambda path: trainer.save_model(str(path)), self._emit)
            trainer.add_callback(self.validation)
        if self.launch:
            trainer.add_callback(AgreeOnControl())  # last: it spreads what the callbacks before it decided
        return trainer

    def _sft_trainer(self, loaded: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        from trl import SFTTrainer

        split = self.split
        return SFTTrainer(
            model=loaded.model, args=sft_config(self.dataset, self.config, self.run.checkpoints_dir, split,
                                                self._validates()),
            train_dataset=self.dataset.to_hf(split.train),
            eval_dataset=self.dataset.to_hf(split.validation) if split.validation else None,
            processing_class=tokenizer, peft_config=loaded.peft_config, callbacks=callbacks,
        )

    def _eval_every(self) -> int:
        """Steps between validations: answers scored under SFT, held-out pairs under a preference method."""
        c = self.config
        per_epoch = c.epoch_steps(len(self.split.train))
        return validation_every(per_epoch, c.steps or math.ceil(per_epoch * (c.epochs or 1)))

    def _validates(self) -> bool:
        """Whether answers are scored during training. The same on every rank (it sets the Trainer's own
        evaluation schedule); off under FSDP, where one rank alone cannot run the sharded model."""
        return (bool(self.make_validator and self.split.validation) and not sharded(self.config)
                and self.config.method == "sft")  # a preference run scores held-out pairs instead

    def _validation_plan(self) -> ValidationPlan | None:
        """The scoring plan of the rank that scores (rank 0); the others follow its decisions (engine.ranks)."""
        if not (self._validates() and self.main):
            return None
        return ValidationPlan(self.make_validator(self.split.validation), self._eval_every(),
                              self.config.patience if self.config.early_stopping else None)

    def _oom_message(self, exc: BaseException) -> str:
        c = self.config
        where = "GPU" if cuda_available() else "host"
        hints = [f"--batch-size {max(1, c.batch_size // 2)} (now {c.batch_size}; add --grad-accum "
                 f"{c.grad_accum * 2} to keep the effective batch)",
                 f"--max-length {max(128, c.max_length // 2)} (now {c.max_length}; longest example "
                 f"{self.dataset.stats.longest} tokens)"]
        if c.quant == "none" and cuda_available():
            hints.append("--quant 4bit (now none)")
        if not c.gradient_checkpointing:
            hints.append("gradient checkpointing (now off)")
        if self.launch and c.strategy == "ddp":
            hints.append(f"--strategy fsdp (now ddp: a whole copy on each of the {self.launch.world} GPUs)")
        after = "the workers were stopped" if self.launch else "memory was freed and the kernel is usable"
        return (f"out of {where} memory at step {self._step} ({type(exc).__name__}); {after}. Lower: "
                + "; ".join(hints))
