"""The run record: ``runs/`` alone knows a run folder's files, and a folder written by 0.1 still reads."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from jupyter_finetune.data import restore
from jupyter_finetune.engine import ConfigError, TrainConfig
from jupyter_finetune.evaluation import report
from jupyter_finetune.runs import FINE_TUNED, RunStore
from jupyter_finetune.runs.summary import summarize
from jupyter_finetune.server.views import run_detail

PACKAGE = Path(__file__).parents[1] / "jupyter_finetune"
LEGACY = Path(__file__).parent / "fixtures" / "run-v0.1"
RUN_FILES = ("status.json", "metrics.jsonl", "data.json", "data.jsonl", "exports.json", "error.txt", "eval/",
             "checkpoints/", "adapter/")


@pytest.fixture
def legacy(tmp_path):
    """A copy of the run folder 0.1 wrote (trained 4 steps, evaluated, exported as an adapter)."""
    shutil.copytree(LEGACY, tmp_path / "ft_runs")
    return RunStore.at(tmp_path / "ft_runs").get("legacy-v01")


def test_no_module_outside_runs_names_a_file_of_a_run_folder():
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "runs":
            continue
        text = path.read_text()
        names = [n for n in RUN_FILES if re.search(r"[\"'/`]" + re.escape(n), text)]  # in a string or path
        if path.relative_to(PACKAGE).parts[0] != "models" and re.search(r"[\"']config\.json", text):
            names.append("config.json")  # models/ reads a model folder's config.json, which is no run's
        found += [f"{path.relative_to(PACKAGE)}: {n}" for n in names]
    assert found == []


def test_settings_saved_by_0_1_read_back_as_the_same_train_config(legacy):
    settings = legacy.settings()
    config = TrainConfig.from_dict(settings.train)
    assert (config.steps, config.rank, config.lr, config.target_modules, config.save_steps) == (4, 8, 3e-4,
                                                                                              ("all-linear",), 2)
    assert settings.preset == "quick" and settings.backend.startswith("hf: no CUDA GPU")
    assert settings.model == settings.model_path == "/tmp/legacy/work/tiny-llama"


def test_data_saved_by_0_1_restores_with_its_recorded_version(legacy, tiny_tokenizer):
    manifest = legacy.manifest()
    assert (manifest.name, manifest.train_rows, manifest.test_rows, manifest.split) == ("tickets", 24, 6, "0.2")
    data = restore(manifest, legacy.data_rows(), tiny_tokenizer)
    assert data.version == manifest.version == "1b4eeab01cf6"  # the same JSONL text, hence the same hash
    assert len(legacy.conversations("test")) == 6 and legacy.conversations("train")[0][0]["role"] == "system"


def test_evaluation_saved_by_0_1_lists_its_scores_and_its_answers_are_reused(legacy):
    [saved] = legacy.evaluations()
    assert saved.data_version == "1b4eeab01cf6" and saved.metrics == ("json_fields", "json_valid", "exact")
    assert set(saved.systems) == {FINE_TUNED, "base", "fewshot"} and saved.scores() == {
        "json_fields": 0.0, "json_valid": 0.0, "exact": 0.0}
    details = legacy.evaluation_details("1b4eeab01cf6")
    outputs = report.saved_outputs(legacy, "1b4eeab01cf6", details["adapter"], details["outputs"]["settings"])
    assert outputs is not None and len(outputs.generations[FINE_TUNED].answers) == 3


def test_a_run_saved_by_0_1_summarises_and_serves_as_it_did(legacy):
    summary = summarize(legacy)
    assert (summary.status, summary.step, summary.max_steps, summary.data) == ("completed", 4, 4,
                                                                               "tickets v1b4eeab01cf6")
    assert summary.settings["preset"] == "quick" and summary.last_train_loss is not None
    detail = run_detail(legacy)
    assert detail["config"]["train"]["steps"] == 4 and detail["data_summary"]["rows"] == {"train": 24, "test": 6}
    assert detail["evals"][0]["systems"][FINE_TUNED]["scores"]["exact"] == 0.0
    assert legacy.exports()[0]["kind"] == "adapter"
    # the fixture keeps only checkpoint-4's trainer_state.json (no weights, to stay small): not a whole checkpoint
    assert legacy.last_checkpoint() is None


def test_a_saved_setting_this_version_does_not_know_is_refused_by_name(legacy):
    with pytest.raises(ConfigError, match="unknown setting.*warp_speed"):
        TrainConfig.from_dict({**legacy.settings().train, "warp_speed": 9})
