"""The dashboard: throttled redraws, a Stop button, a static record at the end, text elsewhere."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from IPython.utils.capture import capture_output

from jupyter_finetune.ui.dashboard import Dashboard
from jupyter_finetune.ui.plots import figure_png, loss_figure
from jupyter_finetune.ui.tables import summary_html
from helpers import WIDGET_VIEW, assert_no_controls, saved_outputs

# A failure on the dashboard's timer thread or the test's worker thread must fail the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def _events(n: int = 200, run: str = "r", status: str = "completed") -> list[dict]:
    """A start, n train logs (an eval log after every 50th step), an end: as the engine sends them."""
    events = [{"event": "start", "run": run, "max_steps": n, "step": 0, "epochs": 1.0, "config": {}, "time": 0.0}]
    for s in range(1, n + 1):
        events.append({"event": "log", "step": s, "max_steps": n, "epoch": s / n, "loss": 2.0 / s, "eval_loss": None,
                       "lr": 1e-4, "tokens_per_s": 100.0 + s, "memory_gb": 1.0, "eta_s": float(n - s), "time": float(s)})
        if s % 50 == 0:
            events.append({"event": "log", "step": s, "max_steps": n, "epoch": s / n, "loss": None,
                           "eval_loss": 1.0 + 25 / s, "lr": None, "tokens_per_s": 100.0 + s, "memory_gb": 1.5,
                           "eta_s": float(n - s), "time": float(s)})
    events.append({"event": "end", "status": status, "step": n, "message": f"{status} at step {n}", "time": float(n)})
    return events


def _logs(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "log"]


def test_loss_figure_plots_train_and_eval_loss_against_step():
    fig = loss_figure(_logs(_events(100)), title="r")
    train, evals = fig.axes[0].get_lines()
    assert train.get_label() == "train loss" and evals.get_label() == "eval loss"
    assert list(train.get_xdata()) == list(range(1, 101)) and list(train.get_ydata()[:2]) == [2.0, 1.0]
    assert list(evals.get_xdata()) == [50, 100] and list(evals.get_ydata()) == [1.5, 1.25]
    assert tuple(fig.get_size_inches()) == (6.0, 3.0)


def test_figure_png_returns_png_bytes():
    assert figure_png(loss_figure([])).startswith(b"\x89PNG")


def test_summary_html_shows_status_steps_best_eval_and_escapes_the_run_name():
    events = _events(100, run="<b>x</b>")
    html = summary_html(events[0], _logs(events), events[-1])
    assert "completed" in html and "100/100" in html and "1.2500" in html and "1.50 GB" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_summary_html_of_a_running_job_says_running():
    events = _events(100)
    assert "running" in summary_html(events[0], _logs(events)[:10], None)


def test_widget_dashboard_redraws_at_most_once_per_interval_whatever_the_step_rate():
    dash = Dashboard("r", min_redraw_s=1.0, widgets=True)
    events = _events()
    for e in events[:-1]:
        dash(e)
    assert dash.ui["bar"].value == 200 and dash.ui["bar"].max == 200
    assert "step 200/200" in dash.ui["stats"].value and "eval 1.1250" in dash.ui["stats"].value
    dash(events[-1])
    assert 1 <= dash.redraws <= 3


def test_stop_button_calls_on_stop_once_and_disables_itself():
    stops = []
    dash = Dashboard("r", on_stop=lambda: stops.append(1), widgets=True)
    dash(_events(5)[0])
    dash.ui["stop"].click()
    dash.ui["stop"].click()
    assert stops == [1] and dash.ui["stop"].disabled and dash.ui["stop"].description == "Stopping…"


@pytest.mark.parametrize("status, style", [("completed", "success"), ("stopped", "warning"), ("failed", "danger")])
def test_end_colours_the_bar_and_leaves_a_static_record(status, style):
    dash = Dashboard("<i>r</i>", widgets=True)
    assert dash.static_html() == ""
    for e in _events(50, status=status):
        dash(e)
    assert dash.ui["bar"].bar_style == style
    html = dash.static_html()
    assert "data:image/png;base64," in html and f"{status} at step 50" in html and "50/50" in html
    assert "<i>r</i>" not in html


def test_where_widgets_cannot_render_the_live_dashboard_reads_as_text(shell):
    dash = Dashboard("r", widgets=True)
    with capture_output() as cap:
        dash(_events(50)[0])
    [live] = saved_outputs(cap.outputs)
    assert live == {"text/plain": "r: training (50 steps, 1.0 epochs); the live dashboard is a widget, and a summary "
                                  "replaces it when training ends",
                    WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": dash.ui["box"].model_id}}


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_finished_dashboard_leaves_its_record_in_place_of_the_widgets(shell, status):
    """The notebook keeps the summary (HTML and text) in the dashboard's own output, widgets closed."""
    dash = Dashboard("r", min_redraw_s=0.05, widgets=True)
    with capture_output() as cap:
        for e in _events(50, status=status):
            dash(e)
    [record] = saved_outputs(cap.outputs)
    assert set(record) == {"text/plain", "text/html"} and record["text/html"] == dash.static_html()
    assert record["text/plain"] == dash.static_text()
    assert record["text/plain"].startswith(f"r: {status} at step 50 (status {status}, step 50/50, epoch 1.00, ")
    assert_no_controls(record["text/html"])
    models = [m for widget in dash.ui.values() for m in (widget, widget.layout, getattr(widget, "style", None)) if m]
    assert len(models) > len(dash.ui) and all(m.comm is None for m in models)  # closed, with layouts and styles


def test_a_pending_redraw_draws_the_newest_records_after_events_pause():
    dash = Dashboard("r", min_redraw_s=0.2, widgets=True)
    events = _events(30)
    for e in events[:-1]:
        dash(e)
    deadline = time.monotonic() + 3.0
    expected = figure_png(loss_figure(_logs(events), "r"))
    while dash.ui["plot"].value != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dash.ui["plot"].value == expected
    dash(events[-1])


def test_widget_dashboard_runs_on_a_worker_thread():
    dash = Dashboard("r", min_redraw_s=0.05, widgets=True)

    def train() -> None:
        for e in _events(20):
            dash(e)
            time.sleep(0.01)

    worker = threading.Thread(target=train)
    worker.start()
    worker.join()
    assert dash.redraws >= 2 and dash.ui["bar"].value == 20 and "20/20" in dash.static_html()


def test_end_before_start_still_leaves_a_static_record(shell):
    dash = Dashboard("r", widgets=True)
    with capture_output() as cap:
        dash({"event": "end", "status": "failed", "step": 0, "message": "OutOfMemoryError: boom", "time": 0.0})
    assert "OutOfMemoryError: boom" in dash.static_html() and "failed" in dash.static_html()
    assert saved_outputs(cap.outputs) == [{"text/plain": dash.static_text(), "text/html": dash.static_html()}]
    assert dash.static_text().startswith("r: OutOfMemoryError: boom (status failed, step 0/?")


def test_text_dashboard_logs_first_last_and_a_summary(caplog):
    dash = Dashboard("r", min_redraw_s=1.0, widgets=False)
    with caplog.at_level(logging.INFO, logger="jupyter_finetune"):
        for e in _events():
            dash(e)
    assert {(r.name, r.levelname) for r in caplog.records} == {("jupyter_finetune.ui.dashboard", "INFO")}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and dash.ui == {}
    assert lines[0].startswith("r: step 1/200  epoch 0.01  loss 2.0000  lr 1.0e-04  101 tok/s  mem 1.0 GB  ETA 3m19s")
    assert "step 200/200" in lines[1] and "eval 1.1250" in lines[1]
    assert "completed at step 200" in lines[2] and "best eval loss 1.1250" in lines[2]
