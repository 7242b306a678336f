"""Where output goes: a kernel that renders widgets, or plain text (terminal IPython, scripts)."""

from __future__ import annotations


def widgets_available() -> bool:
    """True inside a Jupyter kernel with ipywidgets importable, as tqdm.autonotebook decides."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
            return False
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
