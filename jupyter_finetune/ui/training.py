"""Training from a notebook: show the resolved settings, attach the dashboard, wait or not."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

log = logging.getLogger(__name__)


def settings_html(job: Any) -> str:
    config = job.run.read("config.json")
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in config["train"].items())
    data = job.run.read("data.json")
    head = (f"<b>{escape(job.run.name)}</b>: {escape(data['name'])} v{escape(data['version'])} "
            f"({data['rows']['train']} train / {data['rows']['test']} test), backend {escape(config['backend'])}"
            + (f", resuming from {escape(job.resume_from.name)}" if job.resume_from else ""))
    return f"<div>{head}<details><summary>settings (preset {escape(config['preset'])})</summary><table>{rows}</table></details></div>"


def settings_text(job: Any) -> str:
    config = job.run.read("config.json")
    values = ", ".join(f"{k}={v}" for k, v in config["train"].items())
    resumed = f"; resuming from {job.resume_from.name}" if job.resume_from else ""
    return f"{job.run.name}: backend {config['backend']}{resumed}\nsettings: {values}"


def show_job(job: Any) -> None:
    """The resolved settings, then the live dashboard (attached to ``job``, so it sees every event)."""
    from IPython.display import HTML, display

    from .dashboard import Dashboard

    dashboard = Dashboard(job.run.name, on_stop=job.stop)
    if dashboard.widgets:
        display(HTML(settings_html(job)))
    else:
        log.info(settings_text(job))
    job.listeners.append(dashboard)


def run_job(job: Any, *, background: bool = False) -> Any:
    """Train ``job`` with a dashboard; return its TrainResult, or the job itself when in the background."""
    show_job(job)
    return job.start() if background else job.train()
