"""The live training dashboard: a listener for engine events.

In a notebook: a progress bar, a stats line, the loss curves (redrawn at most once per
``min_redraw_s`` whatever the step rate) and a Stop button; when training ends the widgets are
replaced, in the same output, by static HTML (summary table + PNG of the curves) so a saved
notebook keeps them. Elsewhere: a text line at most every ``min_redraw_s`` and a summary.
Events arrive on the training thread; only widget traits are touched here, never pyplot.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Callable

from .env import widgets_available
from .plots import figure_png, loss_figure
from .tables import duration, summary_html, summary_rows

_BAR_STYLE = {"completed": "success", "failed": "danger", "stopped": "warning"}


def progress_line(record: dict[str, Any]) -> str:
    parts = [f"step {record['step']}/{record['max_steps']}", f"epoch {record.get('epoch', 0):.2f}"]
    if record.get("loss") is not None:
        parts.append(f"loss {record['loss']:.4f}")
    if record.get("eval_loss") is not None:
        parts.append(f"eval {record['eval_loss']:.4f}")
    if record.get("lr") is not None:
        parts.append(f"lr {record['lr']:.1e}")
    parts += [f"{record.get('tokens_per_s', 0):.0f} tok/s", f"mem {record.get('memory_gb', 0):.1f} GB",
              f"ETA {duration(record.get('eta_s'))}"]
    return "  ".join(parts)


class Dashboard:
    def __init__(self, run_name: str, on_stop: Callable[[], None] | None = None, min_redraw_s: float = 1.0,
                 widgets: bool | None = None):
        self.run_name = run_name
        self.on_stop = on_stop
        self.min_redraw_s = min_redraw_s
        self.widgets = widgets_available() if widgets is None else widgets
        self.records: list[dict[str, Any]] = []
        self.start: dict[str, Any] = {"run": run_name, "time": time.time()}
        self.end: dict[str, Any] | None = None
        self.redraws = 0
        self._last_draw = 0.0
        self._last_print = 0.0
        self._ui: dict[str, Any] = {}
        self._handle: Any = None
        self._static = ""

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            self.start = event
            if self.widgets:
                self._show_widgets()
        elif kind == "log":
            self.records.append(event)
            self._update(event)
        elif kind == "end":
            self.end = event
            self._finish()

    def static_html(self) -> str:
        """What stays in the notebook once training ended: summary table and loss curves."""
        return self._static

    def _show_widgets(self) -> None:
        import ipywidgets as w
        from IPython.display import display

        bar = w.IntProgress(value=self.start.get("step", 0), min=0, max=max(1, self.start.get("max_steps", 1)),
                            description="training", bar_style="info")
        stop = w.Button(description="Stop", icon="stop", button_style="warning",
                        tooltip="Stop at the next step; the adapter so far is saved")
        stop.on_click(self._stop_clicked)
        self._ui = {"bar": bar, "stats": w.HTML(f"<b>{self.run_name}</b>: starting…"), "plot": w.Image(format="png"),
                    "stop": stop}
        box = w.VBox([w.HBox([bar, stop]), self._ui["stats"], self._ui["plot"]])
        self._ui["box"] = box
        self._handle = display(box, display_id=True)

    def _stop_clicked(self, _button: Any = None) -> None:
        stop = self._ui["stop"]
        if stop.disabled:
            return
        stop.disabled, stop.description = True, "Stopping…"
        if self.on_stop:
            self.on_stop()

    def _update(self, record: dict[str, Any]) -> None:
        now = time.time()
        due = now - self._last_draw >= self.min_redraw_s
        if self.widgets and self._ui:
            self._ui["bar"].value = record["step"]
            self._ui["stats"].value = f"<b>{self.run_name}</b>: {progress_line(record)}"
            if due:
                self._draw()
        elif not self.widgets and (len(self.records) == 1 or now - self._last_print >= self.min_redraw_s):
            self._last_print = now
            print(f"{self.run_name}: {progress_line(record)}", flush=True)

    def _draw(self) -> None:
        self._ui["plot"].value = figure_png(loss_figure(self.records, self.run_name))
        self._last_draw = time.time()
        self.redraws += 1

    def _finish(self) -> None:
        assert self.end is not None
        png = figure_png(loss_figure(self.records, self.run_name))
        self._static = (f"<div><p><b>{self.run_name}</b>: {self.end['message']}</p>"
                        f"{summary_html(self.start, self.records, self.end)}"
                        f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'/></div>")
        if self.widgets and self._ui:
            from IPython.display import HTML

            self._ui["bar"].bar_style = _BAR_STYLE.get(self.end["status"], "")
            self._ui["plot"].value = png
            self.redraws += 1
            if self._handle is not None:  # None where display() has no front end (plain Python)
                self._handle.update(HTML(self._static))
            for widget in self._ui.values():
                widget.close()
            return
        if self.records:
            print(f"{self.run_name}: {progress_line(self.records[-1])}", flush=True)
        summary = ", ".join(f"{k} {v}" for k, v in summary_rows(self.start, self.records, self.end)[1:])
        print(f"{self.run_name}: {self.end['message']} ({summary})", flush=True)
