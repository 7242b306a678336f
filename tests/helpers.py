"""Small builders shared by the data tests, and a notebook cell run as a user sees it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any


def chat(i: int, system: str | None = "You sort support tickets.") -> dict:
    messages = [{"role": "user", "content": f"Ticket {i}: the printer on floor {i % 7} is broken, case {i * 37}."},
                {"role": "assistant", "content": json.dumps({"team": "it", "priority": "high" if i % 2 else "low", "case": i})}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages}


def jsonl(rows: list) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


def pair(i: int) -> dict:
    """A preference pair in TRL's conversational layout: the concise JSON chosen over a chatty answer."""
    row = chat(i)["messages"]
    return {"prompt": row[:-1], "chosen": row[-1:],
            "rejected": [{"role": "assistant", "content": f"Sure! Ticket {i} looks like an IT problem to me, "
                                                           f"probably {'urgent' if i % 2 else 'not urgent'}."}]}


def pair_rows(n: int = 40) -> list[dict]:
    return [pair(i) for i in range(n)]


def good_rows(n: int = 60) -> list[dict]:
    return [chat(i) for i in range(n)]


def run_cell(shell: Any, cell: str) -> tuple[Any, str, list]:
    """Run ``cell`` as a notebook cell: its value, the text the shell showed for it (without the
    ``Out[n]:`` prompt; empty when the cell ends in an assignment) and what display() published."""
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = shell.run_cell(cell)
    result.raise_error()
    return result.result, re.sub(r"^\s*Out\[\d+\]: \n?", "", cap.stdout), cap.outputs


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a widget's view in a display's data


def saved_outputs(published: list) -> list[dict]:
    """What a notebook keeps of a cell's displays (``capture_output().outputs``), as Jupyter front ends
    apply them: each display in order, an update replacing the data of every output shown under its
    display id (one shown without that id, as ipywidgets 7 shows a widget, is never replaced)."""
    kept: list[tuple[Any, dict]] = []
    for out in published:
        display_id = out.transient.get("display_id")
        if out.update:
            kept = [(i, out.data if i == display_id else data) for i, data in kept]
        else:
            kept.append((display_id, out.data))
    return [data for _, data in kept]


def assert_no_controls(html: str) -> None:
    """A static record has nothing that looks clickable but does nothing once the kernel is gone
    (``<details>``, which opens by itself, is fine)."""
    for tag in ("<button", "<input", "<select", "<textarea", "onclick"):
        assert tag not in html.lower(), f"{tag} in a static record"


def cell_outputs(cell: Any) -> str:
    """What a reader of a saved notebook's cell sees without widget state: its text and HTML."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts.append(data.get("text/plain", "") + data.get("text/html", ""))
    return "\n".join(parts)


def python_with_mounts(mounts: str, code: str) -> str:
    """What ``code`` prints, run by this Python after the shell commands ``mounts`` (a read-only bind, a tiny
    tmpfs) in a private mount namespace, where root too is refused (chmod does not stop root); the test is
    skipped where namespaces are not allowed."""
    import pytest

    if subprocess.run(["unshare", "-rm", "sh", "-c", mounts], capture_output=True).returncode:
        pytest.skip("no mount namespaces here to make a read-only folder or a full disk")
    out = subprocess.run(["unshare", "-rm", "sh", "-c", f'{mounts} && "$0" -c "$1"', sys.executable, code],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()



def at_step(step: int, action: Any) -> Any:
    """A TrainerCallback that does ``action`` at the end of optimizer step ``step`` (a test's stand-in for a
    user or a failure)."""
    from transformers import TrainerCallback

    class At(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                action()

    return At()
