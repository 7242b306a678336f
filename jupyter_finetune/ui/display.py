"""How results display in IPython: the display protocol, as pandas uses it.

A magic returns its result (FtDataset, Plan, EvalReport, RunTable, RunComparison, History, ExportResult,
ChatReply, TrainResult); the cell's display hook renders it once, ``x = %ft_eval ...`` renders
nothing and keeps it, and ``x`` alone renders it again. Those classes live in lower layers, which
must not import ui/ (tests/test_layers.py), so the two forms come from two places:

- text: the object's own ``__repr__``, which a terminal, a script and a plain-text viewer show;
- HTML: ui's pure functions, added by ``register`` to the shell's ``text/html`` formatter by
  module and class name when the extension loads. By name, so that neither the class's module
  (engine.job imports torch) nor the view's (matplotlib) is imported before a result is shown.
  A Plan writes its own ``_repr_html_`` (a table, nothing ui-specific).

Where widgets render, a data set and an evaluation report also bring their example browser: their
display is the HTML (the record a saved notebook keeps) followed by the live widget, whose text
says what it is where it cannot render.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

from .env import publish, widget_bundle, widgets_available

_HTML = {  # (module, class) -> (ui module, function returning the object's HTML)
    ("jupyter_finetune.data.dataset", "FtDataset"): ("data_report", "report_html"),
    ("jupyter_finetune.evaluation.report", "EvalReport"): ("eval_view", "static_html"),
    ("jupyter_finetune.runs.summary", "RunTable"): ("runs_view", "table_html"),
    ("jupyter_finetune.runs.summary", "RunComparison"): ("runs_view", "comparison_html"),
    ("jupyter_finetune.evaluation.chat", "ChatReply"): ("chat", "reply_html"),
    ("jupyter_finetune.evaluation.drift", "History"): ("history_view", "history_html"),
}
_BROWSERS = {  # (module, class) -> (ui module, function returning a widget or None, function returning its text)
    ("jupyter_finetune.data.dataset", "FtDataset"): ("data_report", "browser", "browser_text"),
    ("jupyter_finetune.evaluation.report", "EvalReport"): ("eval_view", "browser", "browser_text"),
}


def register(shell: Any) -> None:
    """Teach ``shell`` the HTML of every result class (once per shell; registering again replaces)."""
    formatter = shell.display_formatter
    for (module, name), view in _HTML.items():
        formatter.formatters["text/html"].for_type_by_name(module, name, _lazy(*view))
    if widgets_available():
        for (module, name), (view, browser, text) in _BROWSERS.items():
            formatter.ipython_display_formatter.for_type_by_name(
                module, name, _with_browser(_lazy(*_HTML[module, name]), _lazy(view, browser), _lazy(view, text)))


def _lazy(module: str, function: str) -> Callable[[Any], Any]:
    """``ui.<module>.<function>``, imported at its first call."""
    def view(obj: Any) -> Any:
        return getattr(import_module(f".{module}", __package__), function)(obj)
    return view


def _with_browser(html: Callable[[Any], str], browser: Callable[[Any], Any],
                  text: Callable[[Any], str]) -> Callable[[Any], None]:
    def show(obj: Any) -> None:
        publish({"text/plain": repr(obj), "text/html": html(obj)})
        widget = browser(obj)
        if widget is not None:
            publish(widget_bundle(widget, text(obj)))
    return show
