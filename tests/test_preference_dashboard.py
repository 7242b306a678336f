"""What a DPO run shows: its reward and log-prob metrics in the events and metrics.jsonl, the dashboard's
panels and warning, the runs table, and %ft_plan's memory and time for pairs and the reference pass."""

from __future__ import annotations

import json
import logging
import threading
import time
from types import SimpleNamespace

import pytest

from helpers import run_cell
from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.data.tokens import Lengths
from jupyter_finetune.engine import build_config
from jupyter_finetune.engine.callbacks import EventCallback
from jupyter_finetune.engine.plan import REJECTED_AS_CHOSEN, build_plan, sequence_tokens
from jupyter_finetune.models.gpus import gpu_table
from jupyter_finetune.models.memory import ModelShape
from jupyter_finetune.runs import RunStore
from jupyter_finetune.runs.summary import row_cells, summarize
from jupyter_finetune.ui.dashboard import LIKELIHOOD_FALL_NATS, Dashboard, likelihood_warning, progress_line
from jupyter_finetune.ui.plots import loss_figure

# A failure on the dashboard's timer thread must fail the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
TRAIN_KEYS = ("reward_margin", "reward_accuracy", "logp_chosen", "logp_rejected")
EVAL_KEYS = tuple(f"eval_{k}" for k in TRAIN_KEYS)


def pair_rows(n: int = 40) -> list[dict]:
    """TRL conversational pairs: a concise JSON answer chosen over a verbose hedge."""
    return [{"prompt": [{"role": "user", "content": f"Ticket {i}: the printer on floor {i % 7} is broken."}],
             "chosen": [{"role": "assistant", "content": json.dumps({"team": "it", "case": i})}],
             "rejected": [{"role": "assistant", "content": f"Well, I think the IT team, maybe? Case {i}."}]}
            for i in range(n)]


@pytest.fixture(scope="module")
def prefs(tiny_model_dir, tiny_tokenizer):
    return prepare(read_records(pair_rows()), name="prefs", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))


@pytest.fixture(scope="module")
def dpo_run(prefs, tmp_path_factory):
    """A 6-step DPO run on the tiny model, held-out pairs scored along the way, watched by a text dashboard."""
    runs = tmp_path_factory.mktemp("runs")
    job = api.prepare_training(prefs, runs_dir=runs, name="dpo", method="dpo", steps=6, batch_size=4, lr=1e-3,
                               rank=8, alpha=16, dropout=0.0)
    dashboard = Dashboard("dpo", widgets=False)
    job.listeners.append(dashboard)
    result = job.train()
    assert result.status == "completed", result.message
    return SimpleNamespace(run=RunStore.at(runs).get("dpo"), dashboard=dashboard)


def test_a_dpo_runs_metrics_hold_margin_accuracy_and_log_probs_on_train_and_held_out_records(dpo_run):
    records = dpo_run.run.metrics()
    train = [r for r in records if r.get("loss") is not None]
    held = [r for r in records if r.get("eval_loss") is not None]
    assert len(train) == 6 and held
    for record in train:
        assert all(isinstance(record[k], float) for k in TRAIN_KEYS) and all(record[k] is None for k in EVAL_KEYS)
        assert 0.0 <= record["reward_accuracy"] <= 1.0 and record["logp_chosen"] < 0 and record["logp_rejected"] < 0
    for record in held:
        assert all(isinstance(record[k], float) for k in EVAL_KEYS) and all(record[k] is None for k in TRAIN_KEYS)
    assert train[0]["reward_margin"] == 0.0  # policy = reference at step 0


def test_sft_events_are_unchanged_and_orpo_adds_its_own_terms():
    logs = {"loss": 0.5, "learning_rate": 1e-4, "rewards/margins": 0.3, "rewards/accuracies": 0.75,
            "logps/chosen": -20.0, "logps/rejected": -30.0, "nll_loss": 1.2, "log_odds_ratio": -0.6}
    state = SimpleNamespace(global_step=3, max_steps=6, epoch=0.5)

    def event(method: str) -> dict:
        sent = []
        EventCallback("r", [sent.append], threading.Event(), {"method": method}).on_log(None, state, None, logs=logs)
        return sent[0]

    sft, dpo, orpo = event("sft"), event("dpo"), event("orpo")
    assert set(sft) == {"event", "step", "max_steps", "epoch", "loss", "eval_loss", "lr", "tokens_per_s", "memory_gb",
                        "eta_s", "time"}
    assert set(dpo) - set(sft) == {*TRAIN_KEYS, *EVAL_KEYS}
    assert [dpo[k] for k in TRAIN_KEYS] == [0.3, 0.75, -20.0, -30.0]
    assert (orpo["nll_loss"], orpo["log_odds_ratio"], orpo["eval_nll_loss"]) == (1.2, -0.6, None)


def test_the_dashboard_of_a_dpo_run_shows_margin_and_accuracy_live_and_in_its_static_record(dpo_run):
    dashboard = dpo_run.dashboard
    line = progress_line(dashboard._latest)
    assert " margin " in line and " acc " in line and " eval acc " in line
    html, text = dashboard.static_html(), dashboard.static_text()
    for label in ("last reward accuracy", "last reward margin", "last log-prob chosen", "last log-prob rejected"):
        assert label in html and label in text
    last = [r for r in dashboard.records if r.get("eval_reward_accuracy") is not None][-1]
    assert f"held-out {last['eval_reward_accuracy']:.2f}" in text


def test_the_figure_of_a_preference_run_adds_reward_and_log_prob_panels(dpo_run):
    fig = loss_figure(dpo_run.dashboard.records, "dpo")
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert {"accuracy (train)", "accuracy (held-out)", "margin (train)", "margin (held-out)", "chosen (train)",
            "chosen (held-out)", "rejected (train)", "rejected (held-out)"} <= labels
    assert len(loss_figure([{"step": 1, "loss": 1.0}]).axes) == 1  # an SFT run's figure is as before


def test_the_runs_table_shows_a_preference_runs_final_reward_accuracy(dpo_run):
    summary = summarize(dpo_run.run)
    last = [r for r in dpo_run.run.metrics() if r.get("eval_reward_accuracy") is not None][-1]
    assert summary.reward_accuracy == last["eval_reward_accuracy"]
    assert f"reward acc {last['eval_reward_accuracy']:.2f}" in row_cells(summary)


def _log(step: int, chosen: float, rejected: float, margin: float, held_out: bool = False) -> dict:
    prefix = "eval_" if held_out else ""
    record = {"event": "log", "step": step, "max_steps": 10, "epoch": step / 10, "loss": None if held_out else 0.6,
              "eval_loss": 0.6 if held_out else None, "lr": 1e-4, "tokens_per_s": 100.0, "memory_gb": 1.0,
              "eta_s": 1.0, "time": float(step)}
    record.update({k: None for k in (*TRAIN_KEYS, *EVAL_KEYS)})
    record.update({f"{prefix}logp_chosen": chosen, f"{prefix}logp_rejected": rejected, f"{prefix}reward_margin": margin,
                   f"{prefix}reward_accuracy": 1.0})
    return record


def _trend(chosen: float, rejected: float, margin: float, held_out: bool = False, n: int = 10) -> list[dict]:
    """n records going from log-probs -50 / -80 and margin 0 by ``chosen``, ``rejected``, ``margin`` in all."""
    return [_log(s, -50 + chosen * s / n, -80 + rejected * s / n, margin * s / n, held_out) for s in range(1, n + 1)]


FALL = LIKELIHOOD_FALL_NATS * 3


@pytest.mark.parametrize("held_out", [False, True])
def test_both_log_probs_falling_while_the_margin_rises_is_named(held_out):
    warning = likelihood_warning(_trend(-FALL, -2 * FALL, 0.5, held_out))
    where = "on held-out pairs" if held_out else "on training batches"
    assert warning and "both grew less likely " + where in warning and "known DPO failure" in warning


@pytest.mark.parametrize("chosen, rejected, margin", [
    (+FALL, -FALL, 0.5),  # the healthy run: chosen up, rejected down
    (-LIKELIHOOD_FALL_NATS / 2, -FALL, 0.5),  # chosen dips less than the bound
    (-FALL, -FALL, -0.1),  # both fall but the margin fell too: no preference learned, not this failure
])
def test_no_warning_unless_both_fall_past_the_bound_while_the_margin_rises(chosen, rejected, margin):
    assert likelihood_warning(_trend(chosen, rejected, margin)) is None


def test_held_out_pairs_decide_over_noisy_train_batches():
    falling_train = _trend(-FALL, -FALL, 0.5)
    steady_held_out = [_log(s, -50.0, -80.0 - s, 0.1 * s, held_out=True) for s in (5, 10)]
    assert likelihood_warning(falling_train + steady_held_out) is None
    assert likelihood_warning([_log(1, -50, -80, 0.0), _log(2, -50 - FALL, -80 - FALL, 0.5)])  # two are enough


def test_the_warning_shows_in_the_dashboard_only_for_records_built_to_fall(caplog):
    def finished(records: list[dict]) -> Dashboard:
        dashboard = Dashboard("r", widgets=False, min_redraw_s=0.0)
        for event in [{"event": "start", "run": "r", "max_steps": 10, "step": 0, "epochs": 1.0, "config": {},
                       "time": 0.0}, *records, {"event": "end", "status": "completed", "step": 10,
                                                 "message": "completed all 10 steps", "time": 10.0}]:
            dashboard(event)
        return dashboard

    with caplog.at_level(logging.INFO, logger="jupyter_finetune.ui.dashboard"):
        falling = finished(_trend(-FALL, -FALL, 0.5))
    assert "known DPO failure" in falling.static_html() and "\nwarning: " in falling.static_text()
    assert any(r.levelno == logging.WARNING and "known DPO failure" in r.getMessage() for r in caplog.records)
    healthy = finished(_trend(+FALL, -FALL, 0.5))
    assert "DPO failure" not in healthy.static_html() + healthy.static_text() and healthy.warning is None


def test_the_live_widget_dashboard_shows_the_warning_line_and_the_stats_the_margin():
    dashboard = Dashboard("r", widgets=True, min_redraw_s=0.0)
    dashboard({"event": "start", "run": "r", "max_steps": 10, "step": 0, "epochs": 1.0, "config": {}, "time": 0.0})
    for record in _trend(-FALL, -FALL, 0.5):
        dashboard(record)
    deadline = time.monotonic() + 5.0
    while "known DPO failure" not in dashboard.ui["warning"].value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "known DPO failure" in dashboard.ui["warning"].value and "margin 0.500" in dashboard.ui["stats"].value
    dashboard({"event": "end", "status": "completed", "step": 10, "message": "done", "time": 10.0})


SHAPE = ModelShape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, head_dim=64, vocab=49152,
                   tied_embeddings=True, parameters=134_515_008, context=8192)
"""SmolLM2-135M's shape."""


@pytest.mark.parametrize("checkpointing, time_ratio", [(False, 3.0), (True, 8 / 6 * 2)])
def test_dpo_plans_twice_the_activations_and_tokens_and_a_reference_pass(checkpointing, time_ratio):
    table = gpu_table()
    lengths = Lengths([200] * 30, [120] * 30, [200] * 30)  # rejected answers as long as the chosen ones
    config = build_config("balanced", batch_size=4, max_length=256, epochs=1, gradient_checkpointing=checkpointing)
    lora, dpo, orpo = (build_plan("smollm2", SHAPE, config, m, table.get("T4"), table, lengths, fixed_length=True,
                                  fixed_batch=True) for m in ("lora", "dpo", "orpo"))
    tokens = 2 * 4 * 256  # both sequences of 4 pairs; each block's values, without LoRA dropout's copies (TRL's off)
    saved = tokens * (SHAPE.layers * SHAPE.saved_values_per_token(16, dropout=False) + 2 * SHAPE.hidden) * 2
    assert dpo.chosen.activations == orpo.chosen.activations == (2 * lora.chosen.activations if checkpointing else saved)
    assert lora.chosen.activations < dpo.chosen.activations and dpo.chosen.logits == 2 * lora.chosen.logits
    assert dpo.chosen.reference > 0 and orpo.chosen.reference == lora.chosen.reference == 0
    assert (dpo.chosen.weights, dpo.chosen.lora, dpo.chosen.optimizer) == \
        (lora.chosen.weights, lora.chosen.lora, lora.chosen.optimizer)  # no second copy of the model
    assert lora.chosen.total < orpo.chosen.total <= dpo.chosen.total
    assert dpo.schedule.tokens_per_epoch == orpo.schedule.tokens_per_epoch == 2 * lora.schedule.tokens_per_epoch
    assert dpo.schedule.seconds_per_epoch == pytest.approx(time_ratio * lora.schedule.seconds_per_epoch)
    assert orpo.schedule.seconds_per_epoch == pytest.approx(2 * lora.schedule.seconds_per_epoch)
    assert dpo.recommendation and orpo.recommendation  # fits a T4, as LoRA does: nothing new is refused


MEASURE_DPO = """
import json, sys, torch
sys.path.insert(0, sys.argv[4])
from conftest import build_tokenizer
from datasets import Dataset
from peft import LoraConfig
from torch.profiler import ProfilerActivity, profile
from transformers import LlamaConfig, LlamaForCausalLM
from trl import DPOConfig, DPOTrainer

tokenizer = build_tokenizer()
config = LlamaConfig(**json.loads(sys.argv[1]), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
batch, length = int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
answer = "the quick brown fox jumps over the lazy dog " * 60  # cut at max length: every sequence is that long
pairs = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(batch)],
                           "chosen": [[{"role": "assistant", "content": answer}]] * batch,
                           "rejected": [[{"role": "assistant", "content": "no, " + answer}]] * batch})
lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
args = DPOConfig(output_dir=sys.argv[5], per_device_train_batch_size=batch, max_length=length, report_to=[],
                 use_cpu=True)
trainer = DPOTrainer(model=LlamaForCausalLM(config), args=args, train_dataset=pairs, processing_class=tokenizer,
                     peft_config=lora)
trainer.create_optimizer_and_scheduler(num_training_steps=1)
inputs = next(iter(trainer.get_train_dataloader()))
model = trainer.model.train()
weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n)
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    trainer.compute_loss(model, inputs).backward()
    trainer.optimizer.step()
prof.export_chrome_trace(sys.argv[5] + "/trace.json")
events = json.load(open(sys.argv[5] + "/trace.json"))["traceEvents"]
print(json.dumps({"weights": weights,
                  "peak": max(e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]")}))
"""


@pytest.mark.slow
def test_cpu_estimate_is_within_15_percent_of_a_measured_dpo_step(tmp_path):
    """One step of TRL's DPOTrainer (policy and reference forward, backward, AdamW) on test_plan's random
    16M-parameter Llama in fp32, 4 pairs of 256-token sequences, against the estimate for DPO (a LoRA SFT
    step of the same tokens measures about a fifth more: the reference's logits replace cross-entropy's)."""
    import subprocess
    import sys
    from pathlib import Path

    from test_plan import SMALL, TOLERANCE, tiny_config
    from jupyter_finetune.models.memory import CPU_FP32, estimate_memory

    batch, length = 4, 256
    out = subprocess.run([sys.executable, "-c", MEASURE_DPO, json.dumps(SMALL), str(batch), str(length),
                          str(Path(__file__).parent), str(tmp_path)], capture_output=True, text=True, check=True).stdout
    measured = json.loads(out.strip().splitlines()[-1])
    m = estimate_memory(ModelShape.from_config(tiny_config(**SMALL)), batch_size=batch, max_length=length, rank=8,
                        method="dpo", precision=CPU_FP32)
    assert m.weights == measured["weights"]
    step = m.allocated - m.weights
    assert abs(step - measured["peak"]) <= TOLERANCE * measured["peak"], (
        f"estimated {step / 2**20:.1f} MiB for the step, measured {measured['peak'] / 2**20:.1f} MiB")


def test_pairs_count_their_rejected_sides_own_tokens_and_sft_on_them_only_the_chosen(prefs):
    both = Lengths([100, 300], [50, 50], [120, 400])
    assert sequence_tokens(both, "dpo", 256) == 100 + 256 + 120 + 256
    assert sequence_tokens(both, "lora", 256) == 100 + 256
    assert sequence_tokens(Lengths([100, 300], [50, 50]), "orpo", 256) == 2 * (100 + 256)  # data without pairs
    kept = prefs.validation_split(0.1, 64).train_lengths
    dpo, lora = (api.plan(data=prefs, gpu="T4", method=m).schedule.tokens_per_epoch for m in ("dpo", "lora"))
    assert (dpo, lora) == (sum(kept.full) + sum(kept.rejected), sum(kept.full))


def test_plan_magic_plans_dpo_for_a_preference_data_set_and_says_so(shell, prefs):
    shell.user_ns["prefs"] = prefs
    _, default, _ = run_cell(shell, "%ft_plan --data prefs --gpu T4 --batch-size 4")
    _, dpo, _ = run_cell(shell, "%ft_plan --data prefs --gpu T4 --batch-size 4 --method dpo")
    _, lora, _ = run_cell(shell, "%ft_plan --data prefs --gpu T4 --batch-size 4 --method lora")
    assert default == dpo and "DPO on LoRA r16" in dpo and "reference forward (DPO)" in dpo
    assert "batch 4 pairs (8 sequences)" in dpo and "training pairs" in dpo and "adapter switched off" in dpo
    assert REJECTED_AS_CHOSEN not in dpo  # the data set counts its rejected answers
    assert "DPO" not in lora and "reference forward" not in lora
    _, orpo, _ = run_cell(shell, "%ft_plan --data prefs --gpu T4 --batch-size 4 --method orpo --quant 4bit")
    assert "ORPO on LoRA" in orpo and "no reference model" in orpo and "reference forward" not in orpo
    html = api.plan(data=prefs, gpu="T4")._repr_html_()
    assert "DPO on LoRA" in html and "reference forward (DPO)" in html
