"""The run store: names, overwrite protection, status that survives a killed kernel, metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from jupyter_finetune import api
from jupyter_finetune.errors import FinetuneError
from jupyter_finetune.runs import DamagedRun, RunExists, RunStore
from helpers import python_with_mounts
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


def _status_says(run, **fields) -> None:
    """status.json edited as another process (or machine) left it."""
    path = run.path / "status.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_a_reused_pid_does_not_keep_a_run_running(tmp_path):
    """After a VM restart the saved pid names another process: here this test's own, started at another time."""
    store = RunStore.at(tmp_path)
    run = store.create("r")
    run.set_status("running", step=3)
    assert run.status()["status"] == "running"
    _status_says(run, pid=os.getpid(), proc_start=psutil.Process().create_time() - 3600)
    assert run.status()["status"] == "interrupted"
    _status_says(run, pid=1, proc_start=time.time() - 60)  # init: alive, but not the trainer
    assert run.status()["status"] == "interrupted"
    assert store.create("r", overwrite=True).status()["status"] == "queued"  # --overwrite is not refused


@pytest.mark.parametrize("pid", [-1, 0, None])
def test_a_pid_that_names_no_single_process_is_not_alive(tmp_path, pid):
    run = RunStore.at(tmp_path).create("r")
    run.set_status("running")
    _status_says(run, pid=pid)
    assert run.status()["status"] == "interrupted"


def test_a_restarted_vm_or_another_machine_is_judged_by_the_heartbeat(tmp_path):
    run = RunStore.at(tmp_path).create("r")
    run.set_status("running")
    _status_says(run, boot_id="another-boot")  # same host name, restarted VM: its pid cannot be looked at
    assert run.status()["status"] == "running"  # the heartbeat is fresh: another machine may be training
    _status_says(run, host="colab-vm-7", heartbeat=time.time() - 11 * 60)
    assert run.status()["status"] == "interrupted"


def test_a_status_written_before_processes_recorded_their_start_needs_a_fresh_heartbeat(tmp_path):
    run = RunStore.at(tmp_path).create("r")
    legacy = {"status": "running", "pid": os.getpid(), "step": 3, "updated": time.time() - 3600}
    (run.path / "status.json").write_text(json.dumps(legacy))
    assert run.status()["status"] == "interrupted"
    (run.path / "status.json").write_text(json.dumps({**legacy, "updated": time.time()}))
    assert run.status()["status"] == "running"


def test_status_records_who_trains_and_a_heartbeat(tmp_path):
    run = RunStore.at(tmp_path).create("r")
    run.set_status("running")
    saved = json.loads((run.path / "status.json").read_text())
    assert saved["pid"] == os.getpid() and saved["host"] == socket.gethostname()
    assert abs(saved["proc_start"] - psutil.Process().create_time()) < 1 and saved["heartbeat"] >= saved["updated"]
    time.sleep(0.01)
    run.beat()
    assert json.loads((run.path / "status.json").read_text())["heartbeat"] > saved["heartbeat"]
    run.set_status("completed")
    run.beat()  # a late beat of a finished run changes nothing
    assert run.status()["status"] == "completed"


def test_a_new_attempt_cuts_a_torn_metrics_line_and_counts_up(tmp_path):
    run = RunStore.at(tmp_path).create("r")
    assert run.begin_attempt() == 1
    run.set_status("running", attempt=1)
    for s in (1, 2):
        run.append_metrics({"step": s, "loss": 1.0, "attempt": 1})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # killed mid-write
    assert run.begin_attempt() == 2
    run.append_metrics({"step": 1, "loss": 2.0, "attempt": 2})
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 1]


def _checkpoint(folder, step, tensors=4):
    """A checkpoint as the Trainer writes one: weights, optimizer, scheduler, RNG state, trainer state last."""
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({f"w{i}": torch.randn(64, 64) for i in range(tensors)}, path / "adapter_model.safetensors")
    (path / "adapter_config.json").write_text('{"r": 8}')
    torch.save({"state": {i: torch.randn(64, 64) for i in range(tensors)}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"python": 1}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def _cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("damage, named", [
    (lambda c: _cut(c / "adapter_model.safetensors"), "adapter_model.safetensors is cut short"),
    (lambda c: _cut(c / "adapter_model.safetensors", 0.0001), "adapter_model.safetensors is cut short"),
    (lambda c: _cut(c / "optimizer.pt", 0.9), "optimizer.pt is cut short"),
    (lambda c: _cut(c / "trainer_state.json"), "trainer_state.json is unreadable"),
    (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
    (lambda c: [p.unlink() for p in c.iterdir()], "no trainer_state.json"),
])
def test_a_checkpoint_cut_by_a_kill_is_passed_over_for_the_newest_whole_one(tmp_path, damage, named):
    run = RunStore.at(tmp_path).create("r")
    _checkpoint(run.checkpoints_dir, 2)
    damage(_checkpoint(run.checkpoints_dir, 4))
    point = run.resume_point()
    assert (point.checkpoint.name, point.step) == ("checkpoint-2", 2)
    assert [name for name, _ in point.skipped] == ["checkpoint-4"] and named in point.skipped[0][1]
    assert not (run.checkpoints_dir / "checkpoint-4").exists()  # neither resume nor rotation may take it again
    note = point.note(last_step=5)
    assert note.startswith(f"checkpoint-4 is incomplete ({point.skipped[0][1]})")
    assert "resuming from checkpoint-2 at step 2" in note and "steps 3-5 are trained again" in note


def test_without_a_whole_checkpoint_resume_says_it_starts_again(tmp_path):
    run = RunStore.at(tmp_path).create("r")
    assert run.resume_point().note(last_step=30) == "no checkpoint yet: starting again from step 0 (the run had reached step 30)"
    _cut(_checkpoint(run.checkpoints_dir, 50) / "scheduler.pt")
    point = run.resume_point()
    assert point.checkpoint is None and point.note(30).endswith("no whole checkpoint yet: starting again from step 0 "
                                                                "(the run had reached step 30)")


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
