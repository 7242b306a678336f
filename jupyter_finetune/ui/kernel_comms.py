"""Widget messages for a cell that is still running, on ipykernel 6.

The dashboard's Stop button sends a ``comm_msg`` on the kernel's shell channel. ipykernel 7
handles ``comm_open``/``comm_msg``/``comm_close`` while an async cell awaits (``Kernel.shell_main``),
so the click reaches an awaited ``%ft_train`` at its next step end. ipykernel 6 (Google Colab ships
6.17) dispatches shell messages strictly one at a time from ``kernel.msg_queue``: the click waits
behind the running cell, and the button does nothing until training is over.

``dispatch_waiting_comms`` does on ipykernel 6 what ipykernel 7 does by itself. Awaited while the
cell waits (the event loop has just run, so what reached the shell socket is in the queue), it
takes the comm messages out of the queue and hands each to the kernel's comm handler as ipykernel
7 does: their output goes to the comm message, no busy/idle status is published, the signal
handlers are left alone (so the notebook's interrupt still stops training), and the cell gets its
parent back afterwards. Every other message stays in the queue in its order: an execute request
queued behind the training cell runs after it, as before. Only the awaiting training loop calls
it, one message at a time, never from inside a handler, so nothing re-enters the kernel's
dispatch. On ipykernel 7 (no ``msg_queue``), and outside a kernel, it does nothing.

This is the one module that knows ipykernel's internals (``msg_queue``, ``_parent_ident``);
jupyter-ui-poll does the same for a blocking loop, but replays held cells itself, after the cell.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})


async def dispatch_waiting_comms() -> int:
    """Handle the widget messages waiting behind the running cell (ipykernel 6); return how many."""
    kernel = _kernel_with_queue()
    if kernel is None:
        return 0
    comms = _take_comms(kernel)
    for raw in comms:
        await _dispatch(kernel, raw)
    return len(comms)


def _kernel_with_queue() -> Any:
    """The running kernel if it queues shell messages one at a time (ipykernel 6), else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    queue = getattr(kernel, "msg_queue", None)
    if not all(hasattr(queue, a) for a in ("qsize", "get_nowait", "put_nowait")):
        return None
    if not isinstance(getattr(kernel, "_parent_ident", None), dict):
        return None
    return kernel


def _take_comms(kernel: Any) -> list[Any]:
    """The raw comm messages in the shell queue, taken out of it; every other entry put back, in order.

    No await here: nothing joins the queue between taking the entries and putting them back, and
    the queue's only reader (the kernel's dispatch loop) is busy with this very cell.
    """
    queue = kernel.msg_queue
    waiting = [queue.get_nowait() for _ in range(queue.qsize())]
    comms = []
    for entry in waiting:
        raw = _comm_message(kernel, entry)
        if raw is None:
            queue.put_nowait(entry)
        else:
            comms.append(raw)
    return comms


def _comm_message(kernel: Any, entry: Any) -> Any:
    """The raw frames of a queued shell message if it is a comm message, else None.

    A queue entry is ``(counter, dispatch, args)``; a shell message is ``dispatch_shell(frames)``.
    Only the header is read (``content=False`` records no signature, so the full read later
    passes the duplicate check), as ipykernel 7 does to pick out comm messages.
    """
    try:
        _counter, dispatch, args = entry
        if dispatch != kernel.dispatch_shell or len(args) != 1:
            return None
        _idents, frames = kernel.session.feed_identities(args[0], copy=False)
        header = kernel.session.deserialize(frames, content=False, copy=False)["header"]
    except Exception:  # not a message this module understands: it stays queued for the kernel
        return None
    return args[0] if header.get("msg_type") in COMM_TYPES else None


async def _dispatch(kernel: Any, raw: Any) -> None:
    """One comm message through the kernel's comm handler, as ipykernel 7's concurrent dispatch does."""
    cell_ident, cell_parent = kernel._parent_ident["shell"], kernel.get_parent("shell")
    _flush()  # the cell's output so far stays the cell's
    try:
        idents, frames = kernel.session.feed_identities(raw, copy=False)
        msg = kernel.session.deserialize(frames, content=True, copy=False)
        kernel.set_parent(idents, msg, channel="shell")
        handler = kernel.shell_handlers.get(msg["header"]["msg_type"])
        result = handler(kernel.shell_stream, idents, msg) if handler else None
        if inspect.isawaitable(result):
            await result
    except Exception:
        kernel.log.error("Exception in comm message handler:", exc_info=True)
    finally:
        _flush()
        kernel.set_parent(cell_ident, cell_parent, channel="shell")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
