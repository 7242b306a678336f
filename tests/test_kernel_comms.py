"""ui.kernel_comms on an ipykernel 6 shell queue, without a kernel process: the comm messages are
taken out and handled under their own parent, every other entry stays queued in its order, and
the running cell gets its parent back. (tests/test_kernel_stop.py does it in a real kernel.)"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
import zmq
from jupyter_client.session import Session
from tornado.queues import Queue

from jupyter_finetune.ui.kernel_comms import dispatch_waiting_comms


class QueueingKernel:
    """What kernel_comms uses of an ipykernel 6 kernel; the handlers record what they saw."""

    def __init__(self) -> None:
        self.session = Session(key=b"secret")
        self.msg_queue: Queue = Queue()
        self.shell_stream = object()
        self.log = logging.getLogger("kernel")
        self._parent_ident = {"shell": [b"cell-client"], "control": b""}
        self._parents = {"shell": {"header": {"msg_id": "cell"}}, "control": {}}
        self.handled: list[tuple[str, str, list[bytes]]] = []
        self.shell_handlers = {t: self.handle for t in ("comm_open", "comm_msg", "comm_close", "execute_request")}
        self.count = 0

    async def dispatch_shell(self, frames):  # only compared with: kernel_comms handles comms itself
        raise AssertionError("not called")

    def set_parent(self, ident, parent, channel="shell"):
        self._parent_ident[channel], self._parents[channel] = ident, parent

    def get_parent(self, channel="shell"):
        return self._parents[channel]

    def handle(self, stream, idents, msg):
        assert stream is self.shell_stream
        self.handled.append((msg["header"]["msg_type"], self.get_parent()["header"]["msg_id"], idents))

    def receive(self, msg_type: str, content: dict) -> str:
        """A client's message, queued as ipykernel 6's schedule_dispatch queues it; returns its id."""
        msg = self.session.msg(msg_type, content)
        frames = [zmq.Frame(f) for f in self.session.serialize(msg, ident=[b"client"])]
        self.msg_queue.put_nowait((self.count, self.dispatch_shell, (frames,)))
        self.count += 1
        return msg["header"]["msg_id"]


@pytest.fixture()
def kernel(monkeypatch):
    kernel = QueueingKernel()
    monkeypatch.setattr("IPython.get_ipython", lambda: SimpleNamespace(kernel=kernel))
    return kernel


def queued_ids(kernel: QueueingKernel) -> list[str]:
    entries = [kernel.msg_queue.get_nowait() for _ in range(kernel.msg_queue.qsize())]
    ids = []
    for _, dispatch, args in entries:
        if dispatch != kernel.dispatch_shell:
            ids.append(dispatch.__name__)
            continue
        _, frames = kernel.session.feed_identities(args[0], copy=False)
        ids.append(kernel.session.deserialize(frames, content=False, copy=False)["header"]["msg_id"])
    return ids


def test_comm_messages_are_handled_and_cells_stay_queued_in_order(kernel):
    first = kernel.receive("execute_request", {"code": "1"})
    click = kernel.receive("comm_msg", {"comm_id": "button", "data": {"method": "custom"}})
    info = kernel.receive("kernel_info_request", {})

    async def stop_aborting():
        pass

    kernel.msg_queue.put_nowait((kernel.count, stop_aborting, ()))  # not a shell message: left alone
    second = kernel.receive("execute_request", {"code": "2"})
    close = kernel.receive("comm_close", {"comm_id": "button"})

    assert asyncio.run(dispatch_waiting_comms()) == 2
    assert kernel.handled == [("comm_msg", click, [b"client"]), ("comm_close", close, [b"client"])]
    assert queued_ids(kernel) == [first, info, "stop_aborting", second]
    assert kernel.get_parent()["header"]["msg_id"] == "cell" and kernel._parent_ident["shell"] == [b"cell-client"]


def test_a_failing_handler_is_logged_and_the_cell_keeps_its_parent(kernel, caplog):
    def broken(stream, idents, msg):
        raise ValueError("widget bug")

    kernel.shell_handlers["comm_msg"] = broken
    kernel.receive("comm_msg", {"comm_id": "button", "data": {}})
    assert asyncio.run(dispatch_waiting_comms()) == 1
    assert "widget bug" in caplog.text
    assert kernel.get_parent()["header"]["msg_id"] == "cell" and kernel.msg_queue.qsize() == 0


def test_nothing_to_do_without_a_queueing_kernel(monkeypatch):
    for shell in (None, SimpleNamespace(kernel=SimpleNamespace())):  # no IPython; ipykernel 7 (no msg_queue)
        monkeypatch.setattr("IPython.get_ipython", lambda shell=shell: shell)
        assert asyncio.run(dispatch_waiting_comms()) == 0
