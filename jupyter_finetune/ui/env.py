"""Where output goes: a kernel that renders widgets, or plain text (terminal IPython, scripts).

Panels show their outputs with ``publish``, as explicit mime bundles, the same way under ipywidgets
7 and 8:

- a live widget as ``widget_bundle``: its view plus a ``text/plain`` written by the panel, which a
  front end that cannot render the widget (VS Code without its widget renderer, GitHub, a saved
  notebook opened without the kernel) shows instead of ``VBox(children=...)``; no ``text/html``,
  so no static copy of a button that does nothing;
- a static record as ``text/html`` + ``text/plain``, which a saved notebook keeps.

``display(widget, display_id=True)`` cannot do the first: ipywidgets 7 displays a widget through
``_ipython_display_``, which publishes without the display id, so the handle would update
nothing and the finished panel's record would never replace the widget. A widget's view spec
(``get_view_spec``) is the same in both versions.
"""

from __future__ import annotations

from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def in_kernel(shell) -> bool:
    """A Jupyter kernel's shell: ipykernel's, or a subclass (Colab's ``google.colab._shell.Shell``)."""
    return any(c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__)


def widgets_available() -> bool:
    """True inside a Jupyter kernel with ipywidgets importable, as tqdm.autonotebook decides.

    Subclasses of ipykernel's shell count (Colab's ``google.colab._shell.Shell`` is one).
    """
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or not in_kernel(shell):
            return False
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def widget_bundle(widget: Any, text: str) -> dict[str, Any]:
    """The display data of ``widget``'s view, with ``text`` as what shows where it cannot render."""
    return {"text/plain": text, WIDGET_VIEW: widget.get_view_spec()}


def publish(bundle: dict[str, Any], handle: Any = None, display_id: bool = False) -> Any:
    """Publish ``bundle`` as it is, or replace ``handle``'s output with it; returns the output's handle
    (``display_id=True`` makes one). Outside IPython it prints the text and returns None."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display

    if not InteractiveShell.initialized():
        if bundle.get("text/plain"):
            print(bundle["text/plain"])
        return None
    if handle is not None:
        handle.update(bundle, raw=True)
        return handle
    return display(bundle, raw=True, display_id=True if display_id else None)
