"""Preference tuning on a real tiny model: DPO's first loss, parity with plain TRL, --from, stop/resume, ORPO."""

from __future__ import annotations

import math
import shutil
import warnings

import pytest
import torch

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.engine.config import ConfigError
from jupyter_finetune.engine.preference import names_its_reference
from jupyter_finetune.runs import RunStore
from helpers import at_step, good_rows, pair_rows

SETTINGS = dict(steps=6, batch_size=4, lr=1e-3, save_steps=3, rank=8, alpha=16, dropout=0.0, validation=0.0)


@pytest.fixture()
def pairs(tiny_model_dir, tiny_tokenizer):
    return prepare(read_records(pair_rows(40)), name="prefs", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))


def _losses(run):
    return [m["loss"] for m in run.metrics() if m.get("loss") is not None]


def _similarity(a, b) -> float:
    """Cosine similarity of two adapters' lora_B weights (zero at init; the A weights start alike from the seed)."""
    from safetensors.torch import load_file

    x, y = (load_file(str(p / "adapter_model.safetensors")) for p in (a, b))
    flat = [torch.cat([w[k].flatten() for k in sorted(w) if "lora_B" in k]) for w in (x, y)]
    return float(torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0))


def _train(data, runs, **kw):
    job = api.prepare_training(data, runs_dir=runs, **{**SETTINGS, **kw})
    return job, job.train()


def test_preference_data_trains_dpo_by_default_and_its_first_loss_is_log_2(pairs, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job, result = _train(pairs, tmp_path / "runs", name="d")
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]  # one library about another
    assert result.status == "completed" and job.config.method == "dpo"
    losses = _losses(job.run)
    assert abs(losses[0] - math.log(2)) < 1e-5  # the policy is the reference at step 0
    assert losses[-1] < losses[0] - 1e-3
    assert not (job.run.adapter_dir / "ref").exists()


def test_dpo_losses_equal_a_plain_trl_dpo_script_step_by_step(pairs, tiny_model_dir, tmp_path):
    import dataclasses

    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    job, result = _train(pairs, tmp_path / "runs", name="ours", save_steps=None)
    assert result.status == "completed"
    set_seed(0)
    names = {f.name for f in dataclasses.fields(DPOConfig)}
    old = {"max_prompt_length": None} if "max_prompt_length" in names else {}
    # the run's settings say no checkpointing; TRL's own default is on (transformers 5.24 renamed the field)
    old["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = False
    plain = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        args=DPOConfig(output_dir=str(tmp_path / "plain"), max_steps=6, per_device_train_batch_size=4,
                       learning_rate=1e-3, lr_scheduler_type="linear", warmup_steps=0.05, logging_steps=1, seed=0,
                       data_seed=0, max_length=1024, report_to=[], save_strategy="no", use_cpu=True, beta=0.1,
                       loss_type="sigmoid", bf16=False, **old),  # TRL's default is bf16, on CPU too
        train_dataset=pairs.to_hf_pairs("train"), processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    plain.train()
    expected = [h["loss"] for h in plain.state.log_history if "loss" in h]
    ours = _losses(job.run)
    assert len(ours) == len(expected) == 6
    assert max(abs(a - b) for a, b in zip(ours, expected)) < 1e-4
    assert expected[-1] < expected[0] - 1e-3  # the comparison is between runs that learned


def test_dpo_from_an_sft_run_uses_that_adapter_as_the_reference_and_starts_at_log_2(pairs, tmp_path):
    runs = tmp_path / "runs"
    sft, result = _train(pairs, runs, name="sft", method="sft", rank=4, alpha=8)
    assert result.status == "completed" and sft.config.method == "sft"
    dpo, result = _train(pairs, runs, name="dpo", from_run="sft", rank=None, alpha=None)
    assert result.status == "completed"
    assert (dpo.config.rank, dpo.config.alpha, dpo.config.from_run) == (4, 8, "sft")  # the adapter's own shape
    assert abs(_losses(dpo.run)[0] - math.log(2)) < 1e-5  # against the base, the SFT policy would not start at log 2
    assert (dpo.run.path / "start-adapter" / "adapter_config.json").is_file()
    assert _similarity(sft.run.adapter_dir, dpo.run.adapter_dir) > 0.7  # trained further (afresh: ~0.4)
    # the SFT run may go away: the DPO run keeps what it started from, and resumes and exports without it
    shutil.rmtree(runs / "sft")
    assert api.export("dpo", "merged", runs_dir=runs).path.is_dir()


def test_dpo_from_refusals_name_the_fix_before_anything_loads(pairs, tiny_model_dir, tiny_tokenizer, tmp_path):
    runs = tmp_path / "runs"
    chats = prepare(read_records(good_rows(30)), name="chats", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    with pytest.raises(ConfigError, match=r"--method dpo learns from pairs .* 'chats' is messages data .*--format preference"):
        api.prepare_training(chats, runs_dir=runs, method="dpo")
    chosen = api.prepare_training(pairs, runs_dir=runs, name="length")  # the length from the data, as a user gets it
    assert (chosen.config.epochs, chosen.config.lr, chosen.config.early_stopping) == (4.0, 2e-4, False)
    assert chosen.note.startswith("32 examples (4 more set aside to validate on): 4 epochs")
    assert "stops early" not in chosen.note  # nothing scores generated answers during a preference run
    shutil.rmtree(runs / "length")
    orpo = api.prepare_training(pairs, runs_dir=runs, name="orpo", method="orpo")  # it replaces SFT
    shutil.rmtree(runs / "orpo")
    sft = api.prepare_training(pairs, runs_dir=runs, name="sft-length", method="sft")
    shutil.rmtree(runs / "sft-length")
    assert (orpo.config.epochs, orpo.config.lr) == (sft.config.epochs, sft.config.lr) != (4.0, 2e-4)
    assert orpo.config.early_stopping is False
    with pytest.raises(ConfigError, match=r"early stopping follows the score of generated answers.*drop --early-stopping"):
        api.prepare_training(pairs, runs_dir=runs, early_stopping=True)
    with pytest.raises(Exception, match=r"no run named 'nope'"):
        api.prepare_training(pairs, runs_dir=runs, from_run="nope")
    job = api.prepare_training(pairs, runs_dir=runs, name="s", method="sft", steps=1)  # prepared, never trained
    with pytest.raises(ConfigError, match=r"run 's' has no adapter to start from"):
        api.prepare_training(pairs, runs_dir=runs, from_run="s")
    job.train()
    with pytest.raises(ConfigError, match=r"has its own rank; drop --rank"):
        api.prepare_training(pairs, runs_dir=runs, from_run="s", rank=64)
    assert sorted(r.name for r in RunStore.at(runs)) == ["s"]  # nothing was made by a refusal


@pytest.mark.parametrize("start", [None, "sft"])
def test_stop_and_resume_mid_dpo_continue_the_steps_and_the_losses(pairs, tmp_path, start):
    runs = tmp_path / "runs"
    shape = {"from_run": start, "rank": None, "alpha": None} if start else {}
    if start:
        _train(pairs, runs, name="sft", method="sft")
    whole, _ = _train(pairs, runs, name="whole", **shape)
    job = api.prepare_training(pairs, runs_dir=runs, name="part", **{**SETTINGS, **shape})
    job.extra_callbacks.append(at_step(3, job.stop))
    result = job.train()
    assert (result.status, result.step) == ("stopped", 3)
    if start and names_its_reference():  # TRL before 0.29: refused, with the upgrade that makes it work
        with pytest.raises(ConfigError, match=r"needs trl 0.29 or newer .*pip install -U 'trl>=0.29'"):
            api.prepare_training(resume="part", runs_dir=runs)
        return
    resumed = api.prepare_training(resume="part", runs_dir=runs)
    assert resumed.resume_from.name == "checkpoint-3"
    assert resumed.train().status == "completed"
    assert [m["step"] for m in resumed.run.metrics() if m.get("loss") is not None] == list(range(1, 7))
    assert max(abs(a - b) for a, b in zip(_losses(resumed.run), _losses(whole.run))) < 1e-4


def test_orpo_trains_without_a_reference_afresh_and_from_an_sft_run(pairs, tmp_path):
    runs = tmp_path / "runs"
    job, result = _train(pairs, runs, name="o", method="orpo")
    assert result.status == "completed"
    losses = _losses(job.run)
    assert len(losses) == 6 and losses[-1] < losses[0]
    sft, _ = _train(pairs, runs, name="sft", method="sft")
    further, result = _train(pairs, runs, name="o2", method="orpo", from_run="sft", rank=None, alpha=None)
    assert result.status == "completed" and len(_losses(further.run)) == 6
    assert _similarity(sft.run.adapter_dir, further.run.adapter_dir) > 0.7  # trained further, not afresh
    assert not (further.run.adapter_dir / "ref").exists()  # no reference copy: ORPO has none


@pytest.mark.slow
def test_a_dpo_run_exported_as_a_script_trains_again_from_its_copy_of_the_starting_adapter(pairs, tmp_path):
    import subprocess
    import sys

    runs = tmp_path / "runs"
    _train(pairs, runs, name="sft", method="sft")
    dpo, _ = _train(pairs, runs, name="dpo", from_run="sft", rank=None, alpha=None)
    folder = api.export("dpo", "script", runs_dir=runs).path
    assert (folder / "start-adapter" / "adapter_config.json").is_file()
    shutil.rmtree(runs / "sft")  # the other machine has no such run: the script brings its adapter
    done = subprocess.run([sys.executable, "train.py", "--runs-dir", str(tmp_path / "again")], cwd=folder,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    again = RunStore.at(tmp_path / "again").get("dpo")
    assert again.manifest().version == dpo.run.manifest().version  # the same pairs, split alike
    assert again.manifest().format == "preference"
    assert max(abs(a - b) for a, b in zip(_losses(again), _losses(dpo.run))) < 1e-4


def test_the_three_cells_sft_then_dpo_from_it_in_a_notebook(shell, tiny_model_dir):
    import json as json_

    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    from helpers import run_cell

    openai = [{"input": {"messages": r["prompt"]}, "preferred_output": r["chosen"], "non_preferred_output": r["rejected"]}
              for r in pair_rows(40)]
    with capture_output():
        shell.run_cell_magic("ft_data", f"prefs --model {tiny_model_dir}", "\n".join(map(json_.dumps, openai)))
    assert shell.user_ns["prefs"].format == "preference"
    with capture_output():
        sft = shell.run_line_magic("ft_train", "prefs --method sft --steps 2 --batch-size 4 --name s")
    assert sft.status == "completed"
    _, shown, _ = run_cell(shell, "%ft_train prefs --from s --steps 2 --batch-size 4 --name d --beta 0.2 --loss ipo")
    assert "<TrainResult d: completed at step 2" in shown
    config = RunStore.at("ft_runs").get("d").settings().train
    assert (config["method"], config["from_run"], config["beta"], config["loss"]) == ("dpo", "s", 0.2, "ipo")
    with pytest.raises(UsageError, match="invalid choice: 'nope'"):
        shell.run_line_magic("ft_train", "prefs --loss nope")
    with pytest.raises(UsageError, match="has no adapter to start from|no run named 'ghost'"):
        shell.run_line_magic("ft_train", "prefs --from ghost")
