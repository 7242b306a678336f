"""The run store: names, overwrite protection, status that survives a killed kernel, metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from jupyter_finetune.errors import FinetuneError
from jupyter_finetune.runs import RunExists, RunStore
from helpers import python_with_mounts


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


def test_a_name_with_a_trailing_newline_is_refused_and_makes_no_folder(tmp_path):
    store = RunStore.at(tmp_path)
    with pytest.raises(ValueError, match="run name"):
        store.create("evil\n")
    with pytest.raises(ValueError, match="run name"):
        store.get("evil\n")
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_of_the_run_store_is_one_error_naming_it_and_the_fix(tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    with pytest.raises(FinetuneError) as info:
        RunStore.at(tmp_path / "notes.txt" / "ft_runs").create("r")
    assert str(info.value) == (f"{tmp_path / 'notes.txt' / 'ft_runs'}: cannot create a run in this run store (a file "
                               f"is in the way: {tmp_path / 'notes.txt'}) — move that file, or choose another path "
                               "(--runs-dir, or $JUPYTER_FINETUNE_RUNS)")
    with pytest.raises(FinetuneError, match=r"notes.txt: a file, not a folder — point the run store at a folder"):
        RunStore.at(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "not a folder"


def test_a_read_only_run_store_is_one_error_naming_it_and_the_fix(tmp_path):
    store = tmp_path / "drive"
    store.mkdir()
    code = ("from jupyter_finetune.errors import FinetuneError; from jupyter_finetune.runs import RunStore\n"
            f"try: RunStore.at({str(store)!r}).create('r')\nexcept FinetuneError as e: print(e)")
    printed = python_with_mounts(f"mount --bind {store} {store} && mount -o remount,ro,bind {store} {store}", code)
    assert printed == (f"{store}: cannot create a run in this run store (read-only file system) — choose a folder "
                       "on a writable disk (--runs-dir, or $JUPYTER_FINETUNE_RUNS)")
    assert list(store.iterdir()) == []


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
