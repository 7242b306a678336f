"""The live training dashboard: a listener for engine events that owns one output.

In a notebook: a header, a progress bar with a Stop button, a stats line and the loss curves.
Cheap widget updates happen on every event; the figure is rendered on a short-lived timer thread
at most once per ``min_redraw_s`` (the training thread never waits for matplotlib, and the
newest records are drawn even when events pause). Where the widgets cannot render, the output's
text says which run is training. When training ends the widgets are replaced, in the same output,
by static HTML (summary table + PNG of the curves) with the summary as its text, so a saved
notebook keeps them (``env`` explains the bundles). Elsewhere: a text line at most every
``min_redraw_s`` and a summary line, logged at INFO (``jupyter_finetune.ui.dashboard``), so that a
user can silence or redirect them.
"""

from __future__ import annotations

import base64
import logging
import statistics
import threading
import time
from html import escape
from typing import Any, Callable

from ..runs.summary import duration
from .env import publish, widget_bundle, widgets_available
from .plots import figure_png, loss_figure
from .tables import summary_html, summary_rows

log = logging.getLogger(__name__)
_BAR_STYLE = {"completed": "success", "failed": "danger", "stopped": "warning"}

LIKELIHOOD_FALL_NATS = 2.0
"""DPO's known failure is named when the log-probabilities of both the chosen and the rejected answers fell
by more than this many nats from their first logged values while the reward margin rose: the policy then
prefers the chosen answers by making both less likely, the good ones included (by e^2, about 7x, at this
bound). The log-probs are TRL's: summed over an answer's tokens under DPO, a mean per token under ORPO (whose
SFT term keeps the chosen answers likely, so it seldom falls that far)."""
TREND_WINDOW = 5
"""Train records score a different batch each step, so their first and last values are each averaged over up
to this many records (at most half of them); held-out records score the same pairs every time and are
compared one to one. The held-out ones are used when there are two or more."""


def likelihood_warning(records: list[dict[str, Any]]) -> str | None:
    """One line when a preference run shows the failure LIKELIHOOD_FALL_NATS describes, else None."""
    keys = ("logp_chosen", "logp_rejected", "reward_margin")
    for prefix, where, window in (("eval_", "on held-out pairs", 1), ("", "on training batches", TREND_WINDOW)):
        series = [tuple(r[prefix + k] for k in keys) for r in records
                  if all(r.get(prefix + k) is not None for k in keys)]
        if len(series) >= 2:
            break
    else:
        return None
    n = max(1, min(window, len(series) // 2))
    first = [statistics.fmean(v) for v in zip(*series[:n])]
    last = [statistics.fmean(v) for v in zip(*series[-n:])]
    if min(first[0] - last[0], first[1] - last[1]) <= LIKELIHOOD_FALL_NATS or last[2] <= first[2]:
        return None
    return (f"chosen and rejected answers both grew less likely {where} (log-prob of chosen {first[0]:.1f} -> "
            f"{last[0]:.1f}, of rejected {first[1]:.1f} -> {last[1]:.1f}) while the reward margin rose "
            f"({first[2]:.3f} -> {last[2]:.3f}): the known DPO failure of lowering the good answers too; try a "
            "lower --lr, a higher --beta, fewer steps, or --method orpo")


def progress_line(latest: dict[str, Any]) -> str:
    """``step 12/80  epoch 0.60  loss 1.2340  eval 1.3000  json_fields 0.850  lr 1.9e-04  412 tok/s  mem 1.2 GB
    ETA 1m05s`` (the validation score once there is one); a preference run's adds its reward margin and accuracy
    after the losses (``margin 0.412  acc 0.75  eval acc 0.80``)."""
    parts = [f"step {latest['step']}/{latest['max_steps']}", f"epoch {latest.get('epoch', 0.0):.2f}"]
    for key, label, fmt in (("loss", "loss", ".4f"), ("eval_loss", "eval", ".4f"), ("reward_margin", "margin", ".3f"),
                            ("reward_accuracy", "acc", ".2f"), ("eval_reward_accuracy", "eval acc", ".2f"),
                            ("score", latest.get("metric", ""), ".3f"), ("lr", "lr", ".1e")):
        if latest.get(key) is not None:
            parts.append(f"{label} {latest[key]:{fmt}}")
    parts += [f"{latest.get('tokens_per_s', 0.0):.0f} tok/s", f"mem {latest.get('memory_gb', 0.0):.1f} GB",
              f"ETA {duration(latest.get('eta_s'))}"]
    return "  ".join(parts)


def validation_line(event: dict[str, Any]) -> str:
    """``validation at step 36: json_fields 0.850 (best 0.850 at step 36; 4.1 s); e.g. 'prompt' -> 'answer'``."""
    sample = event["samples"][0] if event.get("samples") else None
    shown = f"; e.g. {_short(sample['prompt'])!r} -> {_short(sample['answer'])!r}" if sample else ""
    return (f"validation at step {event['step']}: {event['metric']} {event['score']:.3f} (best "
            f"{event['best_score']:.3f} at step {event['best_step']}; {event['seconds']:.1f} s){shown}")


def samples_html(event: dict[str, Any]) -> str:
    """The validation's sample answers beside their references: what the score is made of."""
    cell = "padding:2px 6px;border:1px solid #8884;text-align:left;vertical-align:top"
    rows = "".join(f"<tr><td style='{cell}'>{escape(_short(s['prompt']))}</td><td style='{cell}'>"
                   f"{escape(_short(s['answer']))}</td><td style='{cell}'>{escape(_short(s['reference']))}</td></tr>"
                   for s in event.get("samples", []))
    head = "".join(f"<th style='{cell}'>{h}</th>" for h in ("prompt", "answer", "reference"))
    return (f"<details open><summary>validation answers at step {event['step']} ({escape(event['metric'])} "
            f"{event['score']:.3f})</summary><table style='border-collapse:collapse;font-size:90%'>"
            f"<tr>{head}</tr>{rows}</table></details>")


def _warning_html(line: str) -> str:
    return f"<p style='color:#c0392b'><b>warning:</b> {escape(line)}</p>"


def _short(text: str, most: int = 160) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


class Dashboard:
    """Listener (``dashboard(event)``) that shows one run's progress as widgets or text lines.

    Safe to call from the training thread: it only sets widget traits and logs; figures are
    built with matplotlib's object API, never pyplot. ``redraws`` counts rendered figures.
    """

    def __init__(self, run_name: str, on_stop: Callable[[], None] | None = None, min_redraw_s: float = 1.0,
                 widgets: bool | None = None):
        self.run_name = run_name
        self.on_stop = on_stop
        self.min_redraw_s = min_redraw_s
        self.widgets = widgets_available() if widgets is None else widgets
        self.start: dict[str, Any] = {"run": run_name, "time": time.time()}
        self.records: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        """Validation events: the score on the task's metric and sample answers, at some steps."""
        self.end: dict[str, Any] | None = None
        self.redraws = 0
        self._latest: dict[str, Any] = {}  # newest non-None value per key: eval and train logs interleave
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last_draw = float("-inf")
        self._last_logged = float("-inf")
        self._logged = 0  # how many records the last logged line covered
        self.warning: str | None = None
        """likelihood_warning's line while the records show it (checked at each redraw or logged line, and at
        the end)."""
        self.ui: dict[str, Any] = {}  # the widgets by name (bar, stop, stats, plot, ...); empty in text mode
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
            self._latest.update((k, v) for k, v in event.items() if v is not None)
            if not self.widgets:
                self._log_progress()
                return
            if not self.ui:  # attached after the start event
                self._show_widgets()
            self._update_widgets()
        elif kind == "validation":
            self.validations.append(event)
            self._latest.update(metric=event["metric"], score=event["score"])
            if not self.widgets:
                log.info("%s: %s", self.run_name, validation_line(event))
                return
            if not self.ui:
                self._show_widgets()
            self.ui["samples"].value = samples_html(event)
            self._update_widgets()
        elif kind == "end":
            self._finish(event)

    def static_html(self) -> str:
        """What stays in the notebook once training ended: summary table and loss curves ("" before)."""
        return self._static

    def static_text(self) -> str:
        """The same record as text: the end message and the summary, and the warning line if any ("" before
        the end)."""
        if self.end is None:
            return ""
        return self._summary_line() + (f"\nwarning: {self.warning}" if self.warning else "")

    def _summary_line(self) -> str:
        summary = ", ".join(f"{k} {v}" for k, v in summary_rows(self.start, self.records, self.end, self.validations)[1:])
        return f"{self.run_name}: {self.end['message']} ({summary})"

    def _check_warning(self, records: list[dict[str, Any]]) -> bool:
        """Sets ``warning`` from ``records``; whether it appeared just now."""
        before, self.warning = self.warning, likelihood_warning(records)
        return before is None and self.warning is not None

    # widgets

    def _show_widgets(self) -> None:
        import ipywidgets as w

        steps = self.start.get("max_steps") or self._latest.get("max_steps") or 1
        plan = (f"{self.start['max_steps']} steps, {self.start.get('epochs', '?')} epochs"
                if "max_steps" in self.start else "")
        head = f"<b>{escape(self.run_name)}</b>" + escape(f": {plan}" if plan else "")
        bar = w.IntProgress(value=self.start.get("step", 0), min=0, max=max(1, steps), bar_style="info")
        stop = w.Button(description="Stop", icon="stop", button_style="warning",
                        tooltip="Stop at the next step; the adapter so far is saved")
        stop.on_click(self._stop_clicked)
        self.ui = {"header": w.HTML(head), "bar": bar, "stop": stop,
                    "stats": w.HTML("<span style='font-family:monospace'>starting…</span>"),
                    "warning": w.HTML(""), "plot": w.Image(format="png"), "samples": w.HTML("")}
        self.ui["row"] = w.HBox([bar, stop])
        self.ui["box"] = w.VBox([self.ui["header"], self.ui["row"], self.ui["stats"], self.ui["warning"],
                                 self.ui["plot"], self.ui["samples"]])
        text = (f"{self.run_name}: training{f' ({plan})' if plan else ''}; the live dashboard is a widget, and a "
                "summary replaces it when training ends")
        self._handle = publish(widget_bundle(self.ui["box"], text), display_id=True)  # None outside IPython

    def _stop_clicked(self, _button: Any = None) -> None:
        stop = self.ui["stop"]
        if stop.disabled:
            return
        stop.disabled, stop.description = True, "Stopping…"
        if self.on_stop:
            self.on_stop()

    def _update_widgets(self) -> None:
        latest = self._latest
        self.ui["bar"].max = max(1, latest["max_steps"])
        self.ui["bar"].value = latest["step"]
        self.ui["stats"].value = f"<span style='font-family:monospace'>{escape(progress_line(latest))}</span>"
        with self._lock:
            if self._timer is not None:
                return  # a pending redraw will pick up this record
            delay = max(0.0, self._last_draw + self.min_redraw_s - time.monotonic())
            self._timer = threading.Timer(delay, self._redraw)
            self._timer.daemon = True
            self._timer.start()

    def _redraw(self) -> None:
        """Runs on the timer thread; records arriving while it renders schedule the next redraw."""
        with self._lock:
            self._timer = None
            if self.end is not None:
                return
            self._last_draw = time.monotonic()
            records, validations = list(self.records), list(self.validations)
        png = figure_png(loss_figure(records, self.run_name, validations))
        warning = likelihood_warning(records)
        with self._lock:
            self.redraws += 1
            if self.end is None:  # else the end's record is final, warning included
                self.warning = warning
                self.ui["plot"].value = png
                self.ui["warning"].value = _warning_html(warning) if warning else ""

    # end

    def _finish(self, end: dict[str, Any]) -> None:
        with self._lock:
            self.end = end
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        png = figure_png(loss_figure(self.records, self.run_name, self.validations))
        with self._lock:
            self.redraws += 1
        self._check_warning(self.records)
        self._static = (f"<div><p><b>{escape(self.run_name)}</b>: {escape(end['message'])}</p>"
                        f"{_warning_html(self.warning) if self.warning else ''}"
                        f"{summary_html(self.start, self.records, end, self.validations)}"
                        f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'"
                        f" alt='loss curves of {escape(self.run_name, quote=True)}'/>"
                        f"{samples_html(self.validations[-1]) if self.validations else ''}</div>")
        if self.widgets:
            self._show_static(end)
        else:
            self._log_end()

    def _show_static(self, end: dict[str, Any]) -> None:
        if self.ui:
            self.ui["bar"].bar_style = _BAR_STYLE.get(end["status"], "")
            self.ui["stop"].disabled = True
        # replaces the widgets' output; a new one where none was shown (training failed before its start event)
        publish({"text/plain": self.static_text(), "text/html": self._static}, handle=self._handle)
        for widget in self.ui.values():  # with their layout and style models: no widget state is left to save
            for model in (widget, getattr(widget, "layout", None), getattr(widget, "style", None)):
                if model is not None:
                    model.close()

    # text

    def _log_progress(self) -> None:
        now = time.monotonic()
        if self._logged == 0 or now - self._last_logged >= self.min_redraw_s:
            self._last_logged, self._logged = now, len(self.records)
            log.info("%s: %s", self.run_name, progress_line(self._latest))
            if self._check_warning(self.records):
                log.warning("%s: %s", self.run_name, self.warning)

    def _log_end(self) -> None:
        if self._logged < len(self.records):
            log.info("%s: %s", self.run_name, progress_line(self._latest))
        log.info("%s", self._summary_line())
        if self.warning:
            log.warning("%s: %s", self.run_name, self.warning)
