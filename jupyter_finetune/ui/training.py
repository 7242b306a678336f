"""Training from a notebook: show the resolved settings, attach the dashboard, wait or not."""

from __future__ import annotations

from html import escape
from typing import Any

from .env import widgets_available


def settings_html(job: Any) -> str:
    settings, data = job.run.settings(), job.run.manifest()
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in settings.train.items())
    head = (f"<b>{escape(job.run.name)}</b>: {escape(data.name)} v{escape(data.version)} "
            f"({data.train_rows} train / {data.test_rows} test), backend {escape(settings.backend)}"
            + (f", resuming from {escape(job.resume_from.name)}" if job.resume_from else ""))
    return f"<div>{head}<details><summary>settings (preset {escape(settings.preset)})</summary><table>{rows}</table></details></div>"


def settings_text(job: Any) -> str:
    settings = job.run.settings()
    values = ", ".join(f"{k}={v}" for k, v in settings.train.items())
    resumed = f"; resuming from {job.resume_from.name}" if job.resume_from else ""
    return f"{job.run.name}: backend {settings.backend}{resumed}\nsettings: {values}"


def show_job(job: Any) -> None:
    """The resolved settings, then the live dashboard (attached to ``job``, so it sees every event)."""
    from IPython.display import HTML, display

    from .dashboard import Dashboard

    if widgets_available():
        display(HTML(settings_html(job)))
    else:
        print(settings_text(job), flush=True)
    job.listeners.append(Dashboard(job.run.name, on_stop=job.stop))


def run_job(job: Any, *, background: bool = False) -> Any:
    """Train ``job`` with a dashboard; return its TrainResult, or the job itself when in the background."""
    show_job(job)
    return job.start() if background else job.train()
