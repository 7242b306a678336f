"""Training from a notebook: the resolved settings shown, and the dashboard attached to the job."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

log = logging.getLogger(__name__)


def settings_html(job: Any) -> str:
    settings, data = job.run.settings(), job.run.manifest()
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in settings.train.items())
    head = (f"<b>{escape(job.run.name)}</b>: {escape(data.name)} v{escape(data.version)} "
            f"({data.train_rows} train / {data.test_rows} test), backend {escape(settings.backend)}"
            + (f"<br>{escape(job.note)}" if job.note else ""))
    return f"<div>{head}<details><summary>settings (preset {escape(settings.preset)})</summary><table>{rows}</table></details></div>"


def settings_text(job: Any) -> str:
    settings = job.run.settings()
    values = ", ".join(f"{k}={v}" for k, v in settings.train.items())
    note = f"\n{job.note}" if job.note else ""
    return f"{job.run.name}: backend {settings.backend}{note}\nsettings: {values}"


def show_job(job: Any) -> None:
    """The resolved settings, then the live dashboard (attached to ``job``, so it sees every event)."""
    from .dashboard import Dashboard
    from .env import publish

    dashboard = Dashboard(job.run.name, on_stop=job.stop)
    if dashboard.widgets:
        publish({"text/plain": settings_text(job), "text/html": settings_html(job)})
    else:
        log.info(settings_text(job))
    job.listeners.append(dashboard)

