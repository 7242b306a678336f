"""%ft_train and %ft_stop through a real IPython shell, on a tiny model."""

from __future__ import annotations

import logging
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_finetune.runs import RunStore
from helpers import assert_no_controls, good_rows, jsonl, run_cell, saved_outputs

pytestmark = pytest.mark.usefixtures("shell_tickets")  # every test starts with %%ft_data tickets made


def test_ft_train_logs_settings_and_progress_returns_the_result_and_keeps_the_run(shell, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="jupyter_finetune"):
        _, shown, _ = run_cell(shell, "%ft_train tickets --steps 6 --batch-size 4 --name t1 --rank 4")
    assert "backend hf: no CUDA GPU" in caplog.text and "rank=4" in caplog.text
    assert "step 6/6" in caplog.text and "completed" in caplog.text
    run = RunStore.at(tmp_path / "ft_runs").get("t1")
    assert run.status()["status"] == "completed" and (run.adapter_dir / "adapter_config.json").exists()
    assert shown == "<TrainResult t1: completed at step 6, adapter in ft_runs/t1/adapter>\n"
    assert run_cell(shell, "r = %ft_train tickets --steps 1 --batch-size 4 --name t2")[1] == ""
    assert (shell.user_ns["r"].run, shell.user_ns["r"].status) == ("t2", "completed")


def test_where_widgets_render_the_notebook_keeps_the_settings_and_the_training_record(shell, monkeypatch):
    from jupyter_finetune.ui import dashboard

    monkeypatch.setattr(dashboard, "widgets_available", lambda: True)
    _, _, published = run_cell(shell, "%ft_train tickets --steps 2 --batch-size 4 --name w")
    settings, record = saved_outputs(published)  # the live dashboard was replaced by its record
    assert settings["text/plain"].startswith("w: backend hf") and "<summary>settings" in settings["text/html"]
    assert record["text/plain"].startswith("w: completed") and "step 2/2" in record["text/plain"]
    assert "data:image/png;base64," in record["text/html"]
    assert_no_controls(settings["text/html"] + record["text/html"])


def test_names_count_up_from_the_data_name(shell, tmp_path):
    with capture_output():
        shell.run_line_magic("ft_train", "tickets --steps 1 --batch-size 4")
        shell.run_line_magic("ft_train", "tickets --steps 1 --batch-size 4")
    assert [r.name for r in RunStore.at(tmp_path / "ft_runs")] == ["tickets-1", "tickets-2"]


def test_config_sets_the_run_store_root(shell, tmp_path):
    shell.run_line_magic("config", f"FinetuneMagics.runs_dir = {str(tmp_path / 'drive')!r}")
    with capture_output():
        shell.run_line_magic("ft_train", "tickets --steps 1 --batch-size 4 --name d")
    assert (tmp_path / "drive" / "d" / "adapter").is_dir()


def test_usage_errors_name_the_fix(shell):
    with pytest.raises(UsageError, match="make it with %%ft_data nope"):
        shell.run_line_magic("ft_train", "nope")
    with pytest.raises(UsageError, match="batch_size must be at least 1"):
        shell.run_line_magic("ft_train", "tickets --batch-size 0")
    with pytest.raises(UsageError, match="needs an NVIDIA GPU"):
        shell.run_line_magic("ft_train", "tickets --quant 4bit")
    with capture_output():
        shell.run_line_magic("ft_train", "tickets --steps 1 --batch-size 4 --name x")
    with pytest.raises(UsageError, match="--overwrite"):
        shell.run_line_magic("ft_train", "tickets --steps 1 --name x")
    with pytest.raises(UsageError, match="drop steps"):
        shell.run_line_magic("ft_train", "--resume x --steps 3")


def test_background_run_is_stopped_by_ft_stop(shell, tmp_path, caplog):
    with capture_output():
        job = shell.run_line_magic("ft_train", "tickets --steps 400 --batch-size 4 --name bg --background")
    assert repr(job).startswith("<TrainJob bg: training;")
    deadline = time.time() + 60
    run = RunStore.at(tmp_path / "ft_runs").get("bg")
    while not run.metrics() and time.time() < deadline:
        time.sleep(0.05)
    with caplog.at_level(logging.INFO, logger="jupyter_finetune"):
        assert shell.run_line_magic("ft_stop", "bg") == ["bg"]
    assert "stopping bg" in caplog.text
    while run.status()["status"] == "running" and time.time() < deadline:
        time.sleep(0.05)
    status = run.status()
    assert status["status"] == "stopped" and status["step"] < 400
