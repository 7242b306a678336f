"""The run store: names, overwrite protection, status that survives a killed kernel, metrics."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from jupyter_finetune import api
from jupyter_finetune.runs import DamagedRun, RunExists, RunStore
from store_builders import DAMAGES, completed_and_training, damage, log, start


def test_unnamed_runs_auto_increment(tmp_path):
    store = RunStore.at(tmp_path)
    assert [store.create().name for _ in range(3)] == ["run-1", "run-2", "run-3"]
    assert [r.name for r in store] == ["run-1", "run-2", "run-3"]


def test_existing_run_is_never_overwritten_without_overwrite(tmp_path):
    store = RunStore.at(tmp_path)
    run = store.create("tickets-v1")
    run.append_metrics({"step": 1, "loss": 2.0})
    with pytest.raises(RunExists, match="--overwrite"):
        store.create("tickets-v1")
    assert run.metrics() == [{"step": 1, "loss": 2.0}]
    assert store.create("tickets-v1", overwrite=True).metrics() == []


@pytest.mark.parametrize("name", ["../x", "/etc", "a/b", "..", ""])
def test_names_outside_the_store_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="run name"):
        RunStore.at(tmp_path).create(name)


def test_root_comes_from_the_environment_for_durable_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_FINETUNE_RUNS", str(tmp_path / "drive"))
    assert RunStore.at().create("r").path == tmp_path / "drive" / "r"


@pytest.mark.slow
def test_run_of_a_killed_process_shows_as_interrupted_with_metrics_intact(tmp_path):
    code = (f"import time; from jupyter_finetune.runs import RunStore; run = RunStore.at({str(tmp_path)!r}).create('r');"
            "run.set_status('running');\nfor s in range(1, 4): run.append_metrics({'step': s, 'loss': 1.0 / s})\n"
            "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    run = RunStore.at(tmp_path).get("r")
    assert run.status()["status"] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.status()["status"] == "interrupted"
    assert [m["step"] for m in run.metrics()] == [1, 2, 3]


def test_half_written_metrics_line_is_skipped_and_after_step_filters(tmp_path):
    run = RunStore.at(tmp_path).create("r")
    for s in range(1, 5):
        run.append_metrics({"step": s, "loss": float(s)})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')
    assert [m["step"] for m in run.metrics(after_step=2)] == [3, 4]


def test_finished_status_records_times(tmp_path):
    run = RunStore.at(tmp_path).create("r")
    run.set_status("running")
    time.sleep(0.01)
    run.set_status("completed", step=10)
    status = run.status()
    assert status["status"] == "completed" and status["step"] == 10 and status["finished"] > status["started"]


def test_unknown_run_lists_the_known_ones(tmp_path):
    store = RunStore.at(tmp_path)
    store.create("a")
    with pytest.raises(FileNotFoundError, match=r"no run named 'b'.*runs: a"):
        store.get("b")


@pytest.mark.parametrize("case", DAMAGES)
def test_a_damaged_file_lists_its_run_as_damaged_with_the_reason_and_the_others_as_usual(tmp_path, case):
    file, change, reason = DAMAGES[case]
    store = RunStore.at(tmp_path)
    completed_and_training(store, [(1, 2.0, None), (2, 1.5, 1.6)])
    broken = start(store, "broken", "smollm2-135m", 4)
    log(broken, 1, 4, 2.0)
    damage(broken, file, change)
    table = api.runs(tmp_path)
    rows = {s.name: s for s in table}
    assert rows["broken"].status == "damaged" and rows["broken"].damage.startswith(reason)
    assert (rows["tickets-v1"].status, rows["tickets-v1"].best_eval_loss) == ("completed", 1.6)
    assert rows["tickets-v2"].status == "running" and rows["tickets-v2"].last_train_loss == 2.25
    assert f"broken: {reason}" in repr(table) and "--overwrite" in repr(table)
    with pytest.raises(DamagedRun, match=rf"run 'broken' is damaged: {re.escape(reason)}.*Fix or delete "
                                         rf"{re.escape(str(broken.path / file))}, or train it again"):
        broken.check()


@pytest.mark.parametrize("file", ["status.json", "config.json", "data.json", "metrics.jsonl", "eval/x.json"])
def test_a_run_file_that_links_outside_the_run_is_not_read(tmp_path, file):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"status": "completed", "train": {"model": "SECRET"}, "name": "SECRET", "step": 1,
                                  "data_version": "SECRET", "systems": {}}))
    store = RunStore.at(tmp_path / "store")
    run = start(store, "r", "smollm2-135m", 4)
    log(run, 1, 4, 2.0)
    (run.path / file).parent.mkdir(exist_ok=True)
    (run.path / file).unlink(missing_ok=True)
    (run.path / file).symlink_to(secret)
    [summary] = api.runs(store.root)
    assert summary.status == "damaged" and summary.damage == f"{file}: links outside the run"
    assert "SECRET" not in repr(summary)
    with pytest.raises(DamagedRun, match=f"{file}: links outside the run"):
        run.check()


def test_a_link_inside_the_run_is_read(tmp_path):
    run = start(RunStore.at(tmp_path), "r", "smollm2-135m", 4)
    (run.path / "config.json").rename(run.path / "config.saved.json")
    (run.path / "config.json").symlink_to("config.saved.json")
    assert run.settings().model == "smollm2-135m" and api.runs(tmp_path)[0].status == "running"


def test_metrics_history_keeps_what_the_latest_attempt_did_not_replace(tmp_path):
    """Killed at step 6 after a checkpoint at 4, resumed (attempt 2) from 4; then, a file written before attempts
    were numbered: killed before any checkpoint, started again at step 1."""
    run = RunStore.at(tmp_path).create("r")
    records = [{"step": s, "loss": 10.0 - s} for s in range(1, 7)] + [{"step": 6, "eval_loss": 0.5}]
    records += [{"step": 5, "loss": 2.0, "attempt": 2}, {"step": 5, "eval_loss": 1.5, "attempt": 2},
                {"step": 6, "loss": 1.0, "attempt": 2}]
    for record in records:
        run.append_metrics(record)
    assert [(m["step"], m.get("attempt", 1)) for m in run.metrics()] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2),
                                                                         (5, 2), (6, 2)]
    [summary] = api.runs(tmp_path)
    assert (summary.last_train_loss, summary.best_eval_loss) == (1.0, 1.5)  # 0.5 was the replaced attempt's

    legacy = RunStore.at(tmp_path).create("legacy")
    for step, loss in [(1, 3.0), (2, 2.5), (3, 2.0), (1, 3.1), (2, 2.6)]:
        legacy.append_metrics({"step": step, "loss": loss})
    assert [(m["step"], m["loss"]) for m in legacy.metrics()] == [(1, 3.1), (2, 2.6)]
    assert [(m["step"], m["loss"]) for m in legacy.metrics(after_step=1)] == [(2, 2.6)]
