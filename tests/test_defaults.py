"""Defaults that learn: the training length from the data, validation on the task's metric during
training (never on the test split), the best adapter kept, early stopping, and resume keeping the best."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file
from transformers import TrainerCallback

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.engine import ConfigError
from jupyter_finetune.data.length import MOST_EPOCHS, TOKENS_SEEN, choose_length
from jupyter_finetune.engine.prepare import prepare_training
from jupyter_finetune.engine import validation
from jupyter_finetune.engine.validation import ValidationScore
from jupyter_finetune.runs import RunStore
from jupyter_finetune.ui.dashboard import Dashboard
from jupyter_finetune.ui.training import settings_text
from helpers import chat, good_rows

SETTINGS = dict(batch_size=4, lr=1e-3, rank=8, alpha=16, dropout=0.0)


# the rule for the training length

def test_ten_examples_get_the_most_passes_and_the_reason_says_why():
    length = choose_length(10, 10 * 80, batch_size=8, grad_accum=1)
    assert (length.epochs, length.steps) == (MOST_EPOCHS, MOST_EPOCHS * 2)
    assert length.reason.startswith(f"10 examples: {MOST_EPOCHS} epochs, {MOST_EPOCHS * 2} steps, so that the model "
                                    f"sees each example {MOST_EPOCHS} times (the most passes")


def test_a_hundred_and_sixty_examples_are_seen_five_times():
    length = choose_length(160, 160 * 90, batch_size=8, grad_accum=1)
    assert (length.epochs, length.steps) == (5, 100)
    assert length.reason == "160 examples: 5 epochs, 100 steps, so that the model sees each example 5 times"
    assert choose_length(160, 160 * 90, batch_size=4, grad_accum=2).steps == 100  # the effective batch counts


def test_a_hundred_thousand_examples_get_one_pass():
    length = choose_length(100_000, 100_000 * 200, batch_size=8, grad_accum=1)
    assert (length.epochs, length.steps) == (1, 12_500)
    assert "one pass" in length.reason


def test_very_long_examples_get_fewer_passes_and_never_none():
    long = choose_length(100, 100 * 8_000, batch_size=8, grad_accum=1)
    assert long.epochs == TOKENS_SEEN // (100 * 8_000) < choose_length(100, 100 * 80, 8, 1).epochs
    assert "800,000 tokens per pass" in long.reason
    assert choose_length(100, 100 * 200_000, batch_size=8, grad_accum=1).epochs == 1


# training: a scripted score stands in for the metric, so which adapter is best is known in advance

@pytest.fixture()
def every_validation(monkeypatch):
    """No budget: a tiny model's steps take milliseconds, so the 10% budget would leave one validation."""
    monkeypatch.setattr(validation, "BUDGET", float("inf"))


@pytest.fixture()
def tickets(tiny_model_dir, tiny_tokenizer):
    return prepare(read_records(good_rows(60)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))


class Scripted:
    """A validator factory whose n-th validation scores ``scores[n]``; it keeps the adapter weights each
    validation saw, and the rows it was made for."""

    def __init__(self, scores: list[float]):
        self.scores, self.weights, self.rows = scores, [], []

    def __call__(self, rows):
        self.rows = rows

        def validate(model, tokenizer):
            from peft import get_peft_model_state_dict

            self.weights.append({k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()})
            score = self.scores[min(len(self.weights) - 1, len(self.scores) - 1)]
            return ValidationScore("exact", score, ({"prompt": "p", "answer": "a", "reference": "r"},))

        return validate


def _train(data, runs, validator, **settings):
    job = prepare_training(RunStore.at(runs), data, name="r", validator=validator, **{**SETTINGS, **settings})
    return job, job.train()


def _same(saved, weights) -> bool:
    return saved.keys() == weights.keys() and all(saved[k].equal(weights[k]) for k in saved)


def test_the_kept_adapter_is_the_best_scoring_one_and_the_last_is_kept_beside_it(tickets, tmp_path, every_validation):
    scripted = Scripted([0.2, 0.6, 0.4, 0.3])
    job, result = _train(tickets, tmp_path / "runs", scripted, steps=16, early_stopping=False)
    assert result.status == "completed" and result.step == 16 and len(scripted.weights) >= 3
    kept = job.run.kept_adapter()
    assert (kept.metric, kept.score) == ("exact", 0.6)
    assert _same(load_file(job.run.adapter_dir / "adapter_model.safetensors"), scripted.weights[1])
    assert _same(load_file(job.run.last_adapter_dir / "adapter_model.safetensors"), scripted.weights[-1])
    assert f"kept the adapter of step {kept.step} (exact 0.600" in result.message
    assert "the last one (step 16)" in result.message
    logged = [m["validation"]["score"] for m in job.run.metrics() if "validation" in m]
    assert logged == scripted.scores[:len(logged)] + [0.3] * (len(logged) - len(scripted.scores))


def test_early_stopping_stops_and_the_summary_says_why(tickets, tmp_path, every_validation):
    scripted = Scripted([0.5, 0.4, 0.3, 0.2, 0.1])
    job = prepare_training(RunStore.at(tmp_path / "runs"), tickets, name="r", validator=scripted, steps=60,
                           early_stopping=True, patience=2, **SETTINGS)
    dashboard = Dashboard("r", widgets=False)
    job.listeners.append(dashboard)
    result = job.train()
    assert len(scripted.weights) == 3 and result.step < 60 and result.status == "completed"
    first = job.run.kept_adapter().step
    why = f"stopped early at step {result.step}: exact did not improve on 0.500 (reached at step {first}) for 2 validations"
    assert result.message.startswith(why)
    assert why in dashboard.static_text() and "best validation exact 0.500" in dashboard.static_text()
    assert _same(load_file(job.run.adapter_dir / "adapter_model.safetensors"), scripted.weights[0])


def test_an_early_stopping_run_without_validation_rows_is_refused_before_training(tiny_model_dir, tiny_tokenizer,
                                                                                    tmp_path):
    few = prepare(read_records(good_rows(12)), name="few", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    with pytest.raises(ConfigError, match="early stopping needs validation rows"):
        api.prepare_training(few, runs_dir=tmp_path / "runs", early_stopping=True)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    job = api.prepare_training(few, runs_dir=tmp_path / "runs")  # chosen by default: off, said nothing about it
    assert job.config.early_stopping is False and "stops early" not in job.note


def test_resume_keeps_the_best_so_far(tickets, tmp_path, every_validation):
    runs = tmp_path / "runs"
    first = Scripted([0.9])
    job = prepare_training(RunStore.at(runs), tickets, name="r", validator=first, steps=16, save_steps=2,
                           early_stopping=False, **SETTINGS)

    class StopAfterFirstValidation(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if first.weights and state.global_step % 2 == 0:
                job.stop()

    job.extra_callbacks.append(StopAfterFirstValidation())
    stopped = job.train()
    assert stopped.status == "stopped" and stopped.step < 16
    best = job.run.kept_adapter()
    second = Scripted([0.3, 0.5, 0.2])
    resumed = prepare_training(RunStore.at(runs), resume="r", validator=second).train()
    assert resumed.status == "completed" and resumed.step == 16 and second.weights
    assert job.run.kept_adapter() == best and best.score == 0.9
    assert _same(load_file(job.run.adapter_dir / "adapter_model.safetensors"), first.weights[0])
    assert f"kept the adapter of step {best.step} (exact 0.900" in resumed.message


def test_validation_widens_its_interval_to_stay_within_a_tenth_of_training_time(tickets, tmp_path):
    import time

    scripted = Scripted([0.5])
    slow = lambda rows: (lambda model, tokenizer: (time.sleep(0.3), scripted(rows)(model, tokenizer))[1])
    job = prepare_training(RunStore.at(tmp_path / "runs"), tickets, name="r", validator=slow, steps=40,
                           early_stopping=False, **SETTINGS)
    events = []
    job.listeners.append(lambda e: events.append(e) if e["event"] == "validation" else None)
    job.train()
    first, *rest = events
    assert first["step"] == 4 and first["next_in"] > 4  # every tenth of the run at first, then wider
    assert len(events) < 10 and rest[-1]["step"] == 40  # fewer than at every tenth; the last step always scored
    assert all(b["step"] - a["step"] >= a["next_in"] for a, b in zip(events, rest[:-1]))


# validation reads the training split only

def test_validation_never_reads_the_test_split(tiny_model_dir, tiny_tokenizer, tmp_path):
    rows = good_rows(60)
    test_rows = [chat(1000 + i, system="You sort support tickets.") for i in range(8)]
    data = prepare(read_records(rows), name="t", tokenizer=tiny_tokenizer, model=str(tiny_model_dir),
                   split=read_records(test_rows))
    test_prompts = {ex.messages[-2]["content"] for ex in data.test}
    job = api.prepare_training(data, runs_dir=tmp_path / "runs", name="v", steps=4, **SETTINGS)
    validation = {ex.messages[-2]["content"] for ex in job.split.validation}
    assert validation and len(job.split.train) + len(job.split.validation) == len(data.train)
    assert not validation & ({ex.messages[-2]["content"] for ex in job.split.train} | test_prompts)
    trainer = job.build_trainer()  # the eval loss is the validation slice's, as the trainer tokenized it
    evaluated = [tiny_tokenizer.decode(ids) for ids in trainer.eval_dataset["input_ids"]]
    assert len(evaluated) == len(validation)
    assert all(any(p in text for p in validation) and not any(p in text for p in test_prompts) for text in evaluated)
    result = job.train()  # the real validator: generation scored with the metric %ft_eval would choose
    validations = [m["validation"] for m in job.run.metrics() if "validation" in m]
    assert result.status == "completed" and validations and validations[0]["metric"] == "json_fields"
    shown = {s["prompt"] for v in validations for s in v["samples"]}
    assert shown and shown <= validation


def test_the_length_rule_is_printed_with_its_reason(tickets, tmp_path):
    job = api.prepare_training(tickets, runs_dir=tmp_path / "runs", name="auto", **SETTINGS)
    assert job.note.startswith(f"{len(job.split.train)} examples ({len(job.split.validation)} more set aside to "
                               f"validate on): ")
    assert "so that the model sees each example" in job.note and "stops early" in job.note
    assert job.note in settings_text(job) and job.run.settings().length == job.note
    assert job.config.epochs == choose_length(len(job.split.train), job.split.train_tokens, 4, 1).epochs


def test_a_failing_validation_costs_the_validation_not_the_training(tickets, tmp_path):
    def broken(rows):
        def validate(model, tokenizer):
            raise ValueError("metric 'mine' returned None")
        return validate

    job, result = _train(tickets, tmp_path / "runs", broken, steps=6)
    assert result.status == "completed" and result.step == 6
    assert "validation failed at step" in result.message and "metric 'mine' returned None" in result.message
    assert (job.run.adapter_dir / "adapter_model.safetensors").exists() and job.run.kept_adapter() is None
