"""The dashboard: throttled redraws, a Stop button, a static record at the end, text elsewhere."""

from __future__ import annotations

import threading

from jupyter_finetune.ui.dashboard import Dashboard
from jupyter_finetune.ui.plots import figure_png, loss_figure
from jupyter_finetune.ui.tables import summary_html


def _events(n: int = 200, run: str = "r"):
    yield {"event": "start", "run": run, "max_steps": n, "step": 0, "epochs": 1, "config": {}, "time": 0.0}
    for s in range(1, n + 1):
        yield {"event": "log", "step": s, "max_steps": n, "epoch": s / n, "loss": 2.0 / s,
               "eval_loss": 1.5 if s % 50 == 0 else None, "lr": 1e-4, "tokens_per_s": 100.0, "memory_gb": 1.0,
               "eta_s": float(n - s), "time": float(s)}
    yield {"event": "end", "status": "completed", "step": n, "message": f"completed at step {n}", "time": float(n)}


def test_loss_figure_draws_train_and_eval_curves():
    records = list(_events(100))[1:-1]
    fig = loss_figure(records)
    train, evals = fig.axes[0].get_lines()
    assert list(train.get_xdata()) == list(range(1, 101)) and train.get_ydata()[1] == 1.0
    assert list(evals.get_xdata()) == [50, 100]
    assert figure_png(fig).startswith(b"\x89PNG")


def test_summary_html_shows_status_steps_best_eval_and_escapes():
    events = list(_events(100, run="<b>x</b>"))
    html = summary_html(events[0], events[1:-1], events[-1])
    assert "completed" in html and "100/100" in html and "1.5000" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_widget_dashboard_throttles_redraws_and_leaves_a_static_record():
    stops = []
    dash = Dashboard("r", on_stop=lambda: stops.append(1), min_redraw_s=1.0, widgets=True)
    events = list(_events())
    for e in events[:-1]:
        dash(e)
    assert dash._ui["bar"].value == 200 and dash.redraws <= 2
    dash._ui["stop"].click()
    dash._ui["stop"].click()
    assert stops == [1] and dash._ui["stop"].disabled
    dash(events[-1])
    assert dash._ui["bar"].bar_style == "success"
    assert "data:image/png;base64," in dash.static_html() and "200/200" in dash.static_html()


def test_text_dashboard_prints_a_few_lines_and_a_summary(capsys):
    dash = Dashboard("r", min_redraw_s=10.0, widgets=False)
    for e in _events():
        dash(e)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert "step 1/200" in lines[0] and "step 200/200" in lines[1] and "completed at step 200" in lines[2]


def test_events_from_a_worker_thread_update_the_widgets():
    dash = Dashboard("r", min_redraw_s=0.0, widgets=True)
    worker = threading.Thread(target=lambda: [dash(e) for e in _events(20)])
    worker.start()
    worker.join()
    assert dash.redraws == 21 and dash.static_html()
