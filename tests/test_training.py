"""Training on a real tiny model: parity with plain TRL, stop, resume, out-of-memory, killed kernels."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings

import pytest
import torch

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.runs import RunExists, RunStore
from helpers import at_step, good_rows

SETTINGS = dict(steps=8, batch_size=4, lr=1e-3, save_steps=4, rank=8, alpha=16, dropout=0.0, validation=0.0)


@pytest.fixture()
def tickets(tiny_model_dir, tiny_tokenizer):
    return prepare(read_records(good_rows(60)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))


def _train(data, runs, **kw):
    job = api.prepare_training(data, runs_dir=runs, **{**SETTINGS, **kw})
    return job, job.train()


def _losses(run_path):
    return [m["loss"] for m in RunStore.at(run_path.parent).get(run_path.name).metrics() if m.get("loss") is not None]


def _train_lines(path):
    """Every train-loss record as written, attempts and all."""
    return [m for m in map(json.loads, path.read_text().splitlines()) if m.get("loss") is not None]


def test_losses_equal_a_plain_trl_script_step_by_step(tickets, tiny_model_dir, tmp_path):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    job, result = _train(tickets, tmp_path / "runs", name="ours")
    assert result.status == "completed"
    set_seed(0)
    plain = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        args=SFTConfig(output_dir=str(tmp_path / "plain"), max_steps=8, per_device_train_batch_size=4,
                       learning_rate=1e-3, lr_scheduler_type="linear", warmup_steps=0.05, logging_steps=1,
                       seed=0, data_seed=0, max_length=1024, report_to=[], save_strategy="no", use_cpu=True),
        train_dataset=tickets.to_hf("train"), processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    plain.train()
    expected = [h["loss"] for h in plain.state.log_history if "loss" in h]
    ours = _losses(job.run.path)
    assert len(ours) == len(expected) == 8
    assert max(abs(a - b) for a, b in zip(ours, expected)) < 1e-4


def test_run_folder_has_config_data_status_metrics_and_a_peft_adapter(tickets, tmp_path):
    job, result = _train(tickets, tmp_path / "runs", name="r")
    files = {p.name for p in job.run.path.iterdir()}
    assert {"config.json", "data.json", "data.jsonl", "status.json", "metrics.jsonl", "adapter", "checkpoints"} <= files
    assert json.loads((job.run.adapter_dir / "adapter_config.json").read_text())["r"] == 8
    assert job.run.status()["status"] == "completed" and job.run.manifest().version == tickets.version
    assert job.run.settings().train["steps"] == 8


def test_training_shows_no_deprecation_one_library_raises_about_another(tickets, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, result = _train(tickets, tmp_path / "runs", name="r", steps=1)
    assert result.status == "completed"
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]


def test_stop_mid_run_saves_the_adapter_and_marks_the_run_stopped(tickets, tmp_path):
    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="s", **SETTINGS)
    job.extra_callbacks.append(at_step(3, job.stop))
    result = job.train()
    assert (result.status, result.step) == ("stopped", 3)
    assert (job.run.adapter_dir / "adapter_model.safetensors").exists()
    assert (job.run.checkpoints_dir / "checkpoint-3").is_dir()
    assert job.run.status()["status"] == "stopped"


def test_notebook_interrupt_stops_gracefully(tickets, tmp_path):
    # As in a kernel; a shell that started us in the background may have left SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="i", **SETTINGS)
    job.extra_callbacks.append(at_step(2, lambda: os.kill(os.getpid(), signal.SIGINT)))  # the notebook's interrupt
    try:
        result = job.train()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the kernel's handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (result.status, result.step) == ("stopped", 2)


def test_awaited_training_lets_the_event_loop_run_between_steps(tickets, tmp_path):
    import jupyter_finetune as ft

    async def stop_after_step_2():  # runs only when training hands the loop a turn
        run = RunStore.at(tmp_path / "runs").get("a")
        while not any(m.get("step", 0) >= 2 for m in run.metrics()):
            await asyncio.sleep(0.001)
        api.stop("a")

    async def cell():
        job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="a", **SETTINGS)
        stopper = asyncio.create_task(stop_after_step_2())
        result = await job.train_async()
        await stopper
        return result

    result = asyncio.run(cell())
    # Step 2 is logged after its step end, so the stop is seen at the end of step 3.
    assert (result.status, result.step) == ("stopped", 3)
    assert asyncio.run(ft.train_async(tickets, runs_dir=tmp_path / "runs", name="b", steps=2)).status == "completed"


def test_resume_continues_the_step_count_and_the_loss(tickets, tmp_path):
    runs = tmp_path / "runs"
    whole, _ = _train(tickets, runs, name="whole")
    job = api.prepare_training(tickets, runs_dir=runs, name="part", **SETTINGS)
    job.extra_callbacks.append(at_step(4, job.stop))
    assert job.train().step == 4
    resumed = api.prepare_training(resume="part", runs_dir=runs)
    assert resumed.resume_from.name == "checkpoint-4"
    assert resumed.train().status == "completed"
    steps = [m["step"] for m in resumed.run.metrics() if m.get("loss") is not None]
    assert steps == list(range(1, 9))
    assert max(abs(a - b) for a, b in zip(_losses(resumed.run.path), _losses(whole.run.path))) < 1e-4


def test_resume_passes_over_a_checkpoint_cut_by_a_kill_and_says_which(tickets, tmp_path):
    runs = tmp_path / "runs"
    job = api.prepare_training(tickets, runs_dir=runs, name="cut", **{**SETTINGS, "save_steps": 2})
    job.extra_callbacks.append(at_step(6, job.stop))  # checkpoints 4 and 6 remain (two are kept)
    assert job.train().step == 6
    weights = job.run.checkpoints_dir / "checkpoint-6" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # the kill came in the middle of this write
    resumed = api.prepare_training(resume="cut", runs_dir=runs)
    assert resumed.note.startswith("checkpoint-6 is incomplete (adapter_model.safetensors is cut short")
    assert "resuming from checkpoint-4 at step 4 (the run had reached step 6; steps 5-6 are trained again)" in resumed.note
    assert resumed.train().status == "completed"
    lines = _train_lines(resumed.run.path / "metrics.jsonl")
    assert [(m["attempt"], m["step"]) for m in lines] == [(1, s) for s in range(1, 7)] + [(2, s) for s in range(5, 9)]
    # the history shows the steps that count: attempt 1's up to where attempt 2 took over
    assert [(m["attempt"], m["step"]) for m in resumed.run.metrics() if m.get("loss") is not None] == [
        (1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6), (2, 7), (2, 8)]


def test_resume_before_the_first_checkpoint_says_it_starts_again_as_a_new_attempt(tickets, tmp_path):
    def killed():
        raise RuntimeError("the VM went away")

    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="early", **{**SETTINGS, "save_steps": None})
    job.extra_callbacks.append(at_step(3, killed))
    assert job.train().status == "failed" and job.run.last_checkpoint() is None
    resumed = api.prepare_training(resume="early", runs_dir=tmp_path / "runs")
    assert resumed.note == "no checkpoint yet: starting again from step 0 (the run had reached step 2)"
    assert resumed.train().status == "completed"
    lines = _train_lines(resumed.run.path / "metrics.jsonl")
    assert [(m["attempt"], m["step"]) for m in lines] == [(1, 1), (1, 2), *((2, s) for s in range(1, 9))]
    history = [(m["attempt"], m["step"]) for m in resumed.run.metrics() if m.get("loss") is not None]
    assert history == [(2, s) for s in range(1, 9)]
    assert resumed.run.status()["attempt"] == 2


def test_resume_from_the_last_steps_checkpoint_trains_nothing_more(tickets, tmp_path):
    """A kill while the final adapter was saved leaves checkpoint-8 of 8 steps: resuming keeps its adapter."""
    job, _ = _train(tickets, tmp_path / "runs", name="end")
    shutil.rmtree(job.run.adapter_dir)
    resumed = api.prepare_training(resume="end", runs_dir=tmp_path / "runs")
    result = resumed.train()
    assert (result.status, result.step) == ("completed", 8) and resumed.run.status()["step"] == 8
    assert max(m["step"] for m in resumed.run.metrics()) == 8
    assert (resumed.run.adapter_dir / "adapter_model.safetensors").is_file()
    assert not (resumed.run.adapter_dir / "optimizer.pt").exists()


def test_without_save_steps_a_checkpoint_is_written_by_the_clock(tickets, tmp_path, monkeypatch):
    from jupyter_finetune.engine import job as job_module

    job, _ = _train(tickets, tmp_path / "runs", name="default", save_steps=None)
    assert job.run.last_checkpoint() is None  # 8 quick steps: under 10 minutes
    monkeypatch.setattr(job_module, "CHECKPOINT_EVERY_S", 0.0)
    job, result = _train(tickets, tmp_path / "runs", name="clock", save_steps=None)
    assert result.status == "completed" and job.run.last_checkpoint().name == "checkpoint-8"


def test_resume_with_other_data_is_refused(tickets, tmp_path, tiny_tokenizer, tiny_model_dir):
    from jupyter_finetune.engine import ConfigError

    _train(tickets, tmp_path / "runs", name="r", steps=2)
    other = prepare(read_records(good_rows(70)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    with pytest.raises(ConfigError, match="was trained on data version"):
        api.prepare_training(other, resume="r", runs_dir=tmp_path / "runs")


def test_out_of_memory_fails_the_run_names_the_settings_and_keeps_the_kernel_usable(tickets, tmp_path):
    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="oom", **SETTINGS)
    job.extra_callbacks.append(at_step(2, oom))
    result = job.train()
    assert result.status == "failed" and job.run.status()["status"] == "failed"
    assert "out of host memory" in result.message and "--batch-size 2 (now 4" in result.message
    assert "--max-length 512 (now 1024" in result.message
    assert [m["step"] for m in job.run.metrics()] == [1]
    _, again = _train(tickets, tmp_path / "runs", name="after", steps=2)
    assert again.status == "completed"


def test_existing_run_is_not_overwritten(tickets, tmp_path):
    job, _ = _train(tickets, tmp_path / "runs", name="r", steps=1)
    metrics = job.run.metrics()
    with pytest.raises(RunExists, match="--overwrite"):
        api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="r", **SETTINGS)
    assert job.run.status()["status"] == "completed" and job.run.metrics() == metrics != []
    assert (job.run.adapter_dir / "adapter_config.json").is_file()
    again = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="r", overwrite=True, **SETTINGS)
    assert again.run.path == job.run.path and again.run.status()["status"] == "queued"
    assert again.run.metrics() == [] and not job.run.adapter_dir.exists()  # with --overwrite, a fresh run


@pytest.mark.slow
def test_killed_kernel_leaves_the_run_interrupted_with_its_metrics(tiny_model_dir, tmp_path):
    script = f"""
import sys, time
sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
from transformers import TrainerCallback
from helpers import good_rows
from jupyter_finetune import api, load_data
class Slow(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kw):
        if state.global_step >= 4:
            print("ready", flush=True)
            time.sleep(60)
data = load_data("tickets", good_rows(60), model={str(tiny_model_dir)!r})
job = api.prepare_training(data, runs_dir={str(tmp_path / 'runs')!r}, name="k", steps=50, batch_size=4, callbacks=[Slow()])
job.train()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run = RunStore.at(tmp_path / "runs").get("k")
    assert run.status()["status"] == "interrupted"
    assert [m["step"] for m in run.metrics()] == [1, 2, 3]


def test_every_training_example_ends_with_the_templates_end_token_and_padding_is_masked(tickets, tmp_path, tiny_tokenizer):
    rows = good_rows(60)
    rows[5]["messages"][2]["content"] = "a much longer answer " * 12
    data = prepare(read_records(rows), name="tickets", tokenizer=tiny_tokenizer, model=tickets.model, split=0.0)
    trainer = api.prepare_training(data, runs_dir=tmp_path / "runs", name="eos", **SETTINGS).build_trainer()
    end = tiny_tokenizer.encode("<|im_end|>\n", add_special_tokens=False)
    seen = 0
    for batch in trainer.get_train_dataloader():
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            real = mask.bool()
            assert ids[real][-len(end):].tolist() == end
            assert labels[real][-len(end):].tolist() == end
            assert (labels[~real] == -100).all()
            assert (labels[real] != -100).sum() > len(end)
            seen += 1
    assert seen == 60


def test_gradient_checkpointing_is_what_the_config_says_not_trls_default(tickets, tmp_path):
    from jupyter_finetune.engine import build_config
    from jupyter_finetune.engine.job import sft_config

    assert sft_config(tickets, build_config(model="m"), tmp_path).gradient_checkpointing is False
    assert sft_config(tickets, build_config(model="m", gradient_checkpointing=True), tmp_path).gradient_checkpointing
