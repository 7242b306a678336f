"""Training on several processes (``--gpus N``), here as 2 CPU processes over gloo: the same losses as one
process with twice the gradient accumulation, one curve, Stop and resume, and no worker left behind
when one dies or the kernel that launched them does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from IPython.core.error import UsageError

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.runs import RunStore
from helpers import at_step, good_rows, run_cell

pytestmark = pytest.mark.slow  # every test launches worker processes

SETTINGS = dict(batch_size=2, lr=1e-3, rank=8, alpha=16, dropout=0.0, validation=0.0)
# dropout 0: each process draws its own dropout masks, one process draws them in another order
LOSS_TOLERANCE = 1e-4
"""Both runs sum the same examples' token losses for each step (accelerate gives process p the batches p,
p+2, ... of the same shuffled order; the Trainer divides by the tokens counted across processes); only the
order of the float32 additions differs (an all-reduce of two halves against one accumulation). Measured:
at most 1e-6 over 6 steps; 1e-4 is the bound the single-process parity test with plain TRL uses."""


@pytest.fixture()
def tickets(tiny_model_dir, tiny_tokenizer):
    return prepare(read_records(good_rows(60)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))


def _losses(run):
    return [(m["step"], m["loss"]) for m in run.metrics() if m.get("loss") is not None]


def _alive(pids):
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def _wait_for_step(run, step, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s >= step for s, _ in _losses(run)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no step {step} within {timeout} s: {run.status()}")


def test_two_processes_give_one_processs_losses_with_twice_the_accumulation_and_one_curve(tickets, tmp_path):
    runs = tmp_path / "runs"
    events = []
    job = api.prepare_training(tickets, runs_dir=runs, name="two", steps=6, gpus=2, **SETTINGS)
    job.listeners.append(events.append)
    two = job.train()
    one = api.prepare_training(tickets, runs_dir=runs, name="one", steps=6, grad_accum=2, **SETTINGS).train()
    assert (two.status, one.status) == ("completed", "completed")
    ours, alone = _losses(job.run), _losses(RunStore.at(runs).get("one"))
    assert [s for s, _ in ours] == [1, 2, 3, 4, 5, 6]  # one record per step: rank 0 alone writes the store
    assert max(abs(a - b) for (_, a), (_, b) in zip(ours, alone, strict=True)) < LOSS_TOLERANCE
    logged = [e["step"] for e in events if e["event"] == "log"]
    assert logged == [1, 2, 3, 4, 5, 6] and events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert (job.run.adapter_dir / "adapter_model.safetensors").exists()
    assert job.pids and not _alive(job.pids)
    assert "2 CPU processes" in job.run.settings().backend


def _stopped_by_the_button(tickets, runs):
    """A 2-process run stopped with the dashboard's Stop button after step 2: the job, its result, the dashboard."""
    from jupyter_finetune.ui.dashboard import Dashboard

    job = api.prepare_training(tickets, runs_dir=runs, name="s", steps=300, gpus=2, save_steps=1000, **SETTINGS)
    dashboard = Dashboard("s", on_stop=job.stop, widgets=True)
    job.listeners.append(dashboard)
    job.start()
    deadline = time.monotonic() + 120
    while not (dashboard.records and dashboard.records[-1]["step"] >= 2) and time.monotonic() < deadline:
        time.sleep(0.1)  # the kernel relays rank 0's records to the dashboard
    dashboard.ui["stop"].click()
    return job, job.wait(), dashboard


def test_the_stop_button_stops_every_process_at_one_step(tickets, tmp_path):
    job, result, dashboard = _stopped_by_the_button(tickets, tmp_path / "runs")
    assert result.status == "stopped" and 2 <= result.step < 300, result
    assert "on request" in result.message and (job.run.adapter_dir / "adapter_config.json").exists()
    assert not _alive(job.pids)
    assert dashboard.ui["bar"].bar_style == "warning" and dashboard.records[-1]["step"] == result.step
    assert job.run.last_checkpoint().name == f"checkpoint-{result.step}"  # every rank stopped at that step


def test_resume_goes_on_on_two_processes_or_on_one(tickets, tmp_path):
    _, result, _ = _stopped_by_the_button(tickets, tmp_path / "runs")
    resumed = api.prepare_training(runs_dir=tmp_path / "runs", resume="s")
    assert f"resuming from checkpoint-{result.step}" in resumed.note
    resumed.start()
    _wait_for_step(resumed.run, result.step + 2)
    resumed.stop()
    again = resumed.wait()
    steps = [s for s, _ in _losses(resumed.run)]
    assert again.status == "stopped" and again.step > result.step and steps == sorted(set(steps))
    assert not _alive(resumed.pids)
    alone = api.prepare_training(runs_dir=tmp_path / "runs", resume="s", gpus=1)  # Kaggle's two GPUs, then one
    assert "continuing on 1 process (ddp); the global batch goes from 4 to 2 examples" in alone.note
    alone.extra_callbacks.append(at_step(again.step + 2, alone.stop))
    last = alone.train()
    assert (last.status, last.step) == ("stopped", again.step + 2)
    assert alone.run.settings().train["gpus"] == 1 and "2 CPU processes" not in alone.run.settings().backend


def test_an_awaited_cell_keeps_the_event_loop_turning_while_the_workers_train(tickets, tmp_path):
    """The notebook's top-level %ft_train is awaited: a Stop handled by the event loop reaches the workers."""
    import asyncio

    async def stop_after_step_2():  # runs only when the supervising loop hands the event loop a turn
        run = RunStore.at(tmp_path / "runs").get("a")
        while not any(s >= 2 for s, _ in _losses(run)):
            await asyncio.sleep(0.01)
        api.stop("a")

    async def cell():
        job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="a", steps=300, gpus=2,
                                   save_steps=1000, **SETTINGS)
        stopper = asyncio.create_task(stop_after_step_2())
        result = await job.train_async()
        await stopper
        return job, result

    job, result = asyncio.run(cell())
    assert result.status == "stopped" and 2 <= result.step < 300 and not _alive(job.pids)


def test_the_notebooks_interrupt_stops_the_workers_not_the_kernel(tickets, tmp_path):
    import threading

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a kernel
    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="i", steps=300, gpus=2, save_steps=1000,
                               **SETTINGS)

    def interrupt():
        _wait_for_step(job.run, 2)
        os.kill(os.getpid(), signal.SIGINT)  # the notebook's interrupt reaches the kernel alone

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        result = job.train()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.status == "stopped" and 2 <= result.step < 300 and not _alive(job.pids)


def test_a_killed_worker_fails_the_run_with_its_rank_and_leaves_no_process(tickets, tmp_path):
    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="k", steps=300, gpus=2, save_steps=1000,
                               **SETTINGS).start()
    _wait_for_step(job.run, 2)
    [second] = [psutil.Process(p) for p in _alive(job.pids)
                if "jupyter_finetune.worker" in " ".join(psutil.Process(p).cmdline())
                and psutil.Process(p).environ().get("RANK") == "1"]
    second.send_signal(signal.SIGKILL)
    result = job.wait()
    assert result.status == "failed" and "worker 1 of 2 died" in result.message and "SIGKILL" in result.message
    assert job.run.status()["status"] == "failed"
    assert not _alive(job.pids)


def test_a_worker_that_raises_fails_the_run_with_its_own_message(tickets, tmp_path):
    """A failure inside a worker (here, a model folder gone before the workers load it) is named in its words."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tickets.model, model)
    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="f", model=str(model), steps=4, gpus=2,
                               **SETTINGS)
    (model / "config.json").unlink()
    result = job.train()
    assert result.status == "failed" and result.message.startswith("worker ") and " of 2 failed: " in result.message
    assert not _alive(job.pids)


def test_a_dead_kernel_stops_its_workers_at_the_next_step_with_a_checkpoint(tickets, tiny_model_dir, tmp_path):
    runs = tmp_path / "runs"
    kernel = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from conftest import build_tokenizer
        from helpers import good_rows
        from jupyter_finetune import api
        from jupyter_finetune.data import prepare, read_records
        data = prepare(read_records(good_rows(60)), name="tickets", tokenizer=build_tokenizer(),
                       model={str(tiny_model_dir)!r})
        api.prepare_training(data, runs_dir={str(runs)!r}, name="orphan", steps=300, gpus=2, save_steps=1000,
                             **{SETTINGS!r}).train()
    """)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (runs / "orphan" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    run = RunStore.at(runs).get("orphan")
    _wait_for_step(run, 2)
    workers = [p for p in psutil.Process(kernel.pid).children(recursive=True)]
    kernel.kill()
    kernel.wait()
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive
    status = run.status()
    assert status["status"] == "stopped" and "kernel that launched it" in status["message"]
    assert run.last_checkpoint() is not None and run.last_checkpoint().name == f"checkpoint-{status['step']}"


def test_the_magic_trains_on_two_processes_and_refuses_what_cannot_run(shell, shell_tickets):
    _, out, _ = run_cell(shell, "%ft_train tickets --gpus 2 --epochs 1 --batch-size 8 --validation 0 --name m")
    run = RunStore.at("ft_runs").get("m")
    # 54 training rows, 8 per process and step on each of 2: an epoch is 4 steps (7 on one process)
    assert "completed at step 4" in out and run.status()["max_steps"] == 4
    assert "2 CPU processes" in run.settings().backend
    for line, says in (("--gpus all", "sees no GPU"), ("--gpus two", "give a number of GPUs"),
                       ("--strategy fsdp", "give gpus 2 or more"),
                       ("--gpus 2 --backend unsloth", "unsloth trains on one GPU here"),
                       ("--gpus 2 --strategy fsdp", "CPU processes cannot shard")):
        with pytest.raises(UsageError, match=says):  # a UsageError: one message, no traceback
            shell.run_line_magic("ft_train", f"tickets --steps 2 {line}")


def test_validation_scores_on_rank_0_and_every_process_follows_its_early_stop(tickets, tmp_path):
    events = []
    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="v", gpus=2, steps=300,
                               **{**SETTINGS, "validation": 0.2, "early_stopping": True, "patience": 1, "lr": 1e-6})
    job.listeners.append(events.append)
    result = job.train()
    validations = [e for e in events if e["event"] == "validation"]
    assert result.status == "completed" and len(validations) >= 2, (result, validations)
    # lr 1e-6: the score cannot improve, so the second validation stops the run (its interval widens to keep
    # validation within 10% of the training time, which on this tiny model puts it well before step 300)
    assert "stopped early" in result.message and result.step < 300
    assert job.run.kept_adapter() is not None and not _alive(job.pids)
