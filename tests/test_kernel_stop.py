"""In a real Jupyter kernel: the dashboard's Stop button and the notebook's interrupt stop a
training cell that is still running, and the run ends `stopped` with its adapter."""

from __future__ import annotations

import queue
import time

import pytest

from jupyter_finetune.runs import RunStore
from helpers import good_rows, jsonl

pytestmark = pytest.mark.slow  # a real kernel per test
STEPS = 400  # far more than the test waits for: only a stop ends the cell early


@pytest.fixture()
def kernel(tmp_path, tiny_model_dir):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        _run(kc, "%load_ext jupyter_finetune")
        _run(kc, f"%%ft_data tickets --model {tiny_model_dir}\n{jsonl(good_rows(60))}")
        yield km, kc
    finally:
        km.shutdown_kernel(now=True)


def _run(kc, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]


def _train_until(kc, name: str, action) -> tuple[dict, float]:
    """Run a %ft_train cell; once it logged a few steps call ``action(stop_button_comm_id)``."""
    msg_id = kc.execute(f"%ft_train tickets --steps {STEPS} --batch-size 4 --name {name}")
    stop_button, bar, acted, deadline = None, None, None, time.time() + 240
    while time.time() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_open":
            model = content["data"].get("state", {}).get("_model_name")
            stop_button = content["comm_id"] if model == "ButtonModel" else stop_button
            bar = content["comm_id"] if model == "IntProgressModel" else bar
        if (acted is None and stop_button and msg["msg_type"] == "comm_msg" and content["comm_id"] == bar
                and content["data"].get("state", {}).get("value", 0) >= 3):  # the progress bar at step 3
            action(stop_button)
            acted = time.time()
        if msg["msg_type"] == "status" and content["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=30)
    assert acted is not None, "training never reached step 3 with a Stop button shown"
    return reply, time.time() - acted


def _status(tmp_path, name: str) -> dict:
    run = RunStore.at(tmp_path / "ft_runs").get(name)
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    return run.status()


def _output(kc, msg_id: str) -> str:
    """The printed output of cell ``msg_id``, once it has run (its idle status)."""
    text, deadline = "", time.time() + 60
    while time.time() < deadline:
        msg = kc.get_iopub_msg(timeout=max(deadline - time.time(), 0.1))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return text
    raise AssertionError(f"cell {msg_id} never ran")


def test_stop_button_stops_the_running_cell(kernel, tmp_path):
    """The click reaches the running cell (ipykernel 6 too: Colab); a cell queued before the click
    still waits, and runs after the training cell."""
    km, kc = kernel
    queued = []

    def click(button: str) -> None:
        queued.append(kc.execute("from jupyter_finetune.runs import RunStore\n"
                                 "print(RunStore.at('ft_runs').get('by-button').status()['status'])"))
        kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": button,
                                                          "data": {"method": "custom", "content": {"event": "click"}}}))

    reply, after = _train_until(kc, "by-button", click)
    status = _status(tmp_path, "by-button")
    assert reply["content"]["status"] == "ok" and status["status"] == "stopped"
    assert 3 <= status["step"] < STEPS and after < 60
    assert reply["parent_header"]["msg_id"] != queued[0]  # the training cell answered first
    later = kc.get_shell_msg(timeout=60)
    assert later["parent_header"]["msg_id"] == queued[0] and later["content"]["status"] == "ok"
    assert later["content"]["execution_count"] == reply["content"]["execution_count"] + 1
    assert _output(kc, queued[0]) == "stopped\n"  # it ran after training had ended


def test_notebook_interrupt_stops_the_running_cell(kernel, tmp_path):
    km, kc = kernel
    reply, after = _train_until(kc, "by-interrupt", lambda _button: km.interrupt_kernel())
    status = _status(tmp_path, "by-interrupt")
    assert status["status"] == "stopped" and 3 <= status["step"] < STEPS and after < 60
    _run(kc, "print('the kernel still works')")
