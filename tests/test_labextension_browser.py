"""The JupyterLab extension in a real browser: the runs sidebar, a run's view and the status bar item.

A real ``jupyter lab`` serves a run store written with the library's own writers (a failed run, a
completed and evaluated one, one still training); Debian's chromium, driven by Playwright, opens
the sidebar and a run, and sees both update when the training run logs more steps. Screenshots in
the light and dark themes are kept under test-artifacts/.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from jupyter_finetune.runs import RunStore
from store_builders import DAMAGES, completed_and_training, damage, log, start, tickets

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "jupyter_finetune" / "labextension"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium (.ci/run does, as root)"),
    pytest.mark.skipif(not (BUILT / "package.json").is_file(),
                       reason="labextension not built: run `python labextension/build.py` (make install does)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, log_path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited ({server.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer {url} in {seconds} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    """tickets-bad's metrics damaged (a string loss); tickets-v0 failed at step 1; tickets-v1 completed (4 steps,
    train and eval loss, evaluated); tickets-v2 training at step 2 of 8 (its status names this process, which is
    alive)."""
    store = RunStore.at(tmp_path_factory.mktemp("lab") / "ft_runs")
    damage(start(store, "tickets-bad", "smollm2-135m", 8), *DAMAGES["metrics string loss"][:2])
    failed = start(store, "tickets-v0", "smollm2-135m", 8)
    log(failed, 1, 8, 2.9)
    failed.set_status("failed", step=1, max_steps=8, message="CUDA out of memory")
    completed_and_training(store, [(1, 2.0, None), (2, 1.5, None), (2, None, 1.6), (3, 1.2, None), (4, 1.1, None),
                                   (4, None, 1.3)])
    return store


@pytest.fixture(scope="module")
def lab(store) -> Iterator[str]:
    """``jupyter lab`` on a free port with a random token, reading ``store``, with the repository's
    freshly built extension put first on the labextensions path; always stopped afterwards."""
    home = store.root.parent
    extensions = home / "labextensions"
    extensions.mkdir()
    (extensions / "jupyter-finetune").symlink_to(BUILT, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_FINETUNE_RUNS"}
    env.update({"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
                "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")})
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "notified about Jupyter news?" toast over the screenshots
    port, token = free_port(), secrets.token_hex(16)
    log_path = home / "jupyter-lab.log"
    with open(log_path, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={home}",
             f"--JupyterFinetune.runs_dir={store.root}",
             f"--LabApp.extra_labextensions_path={extensions}", "--LabApp.expose_app_in_browser=True",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home)
    try:
        wait_for(f"http://127.0.0.1:{port}/jupyter-finetune/api/runs?token={token}", server, log_path)
        yield f"http://127.0.0.1:{port}/lab?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


@pytest.mark.timeout(420)
def test_sidebar_run_view_and_status_bar_in_a_browser(lab, store):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(lab, timeout=120_000)

            tab = page.locator('.jp-SideBar li[data-id="jupyter-finetune-runs"]')
            expect(tab).to_be_visible(timeout=120_000)
            assert tab.get_attribute("title") == "Fine-tuning"
            tab.click()
            panel = page.locator("#jupyter-finetune-runs")
            expect(panel.locator(".jp-Finetune-title")).to_have_text("Fine-tuning")
            runs = panel.locator(".jp-Finetune-run")
            expect(runs).to_have_count(4)
            assert [runs.nth(i).get_attribute("data-run") for i in range(4)] == \
                ["tickets-v2", "tickets-v1", "tickets-v0", "tickets-bad"]
            for name, status in [("tickets-v2", "running"), ("tickets-v1", "completed"), ("tickets-v0", "failed"),
                                 ("tickets-bad", "damaged")]:
                expect(panel.locator(f'[data-run="{name}"] .jp-Finetune-badge')).to_have_text(status)
            bad = panel.locator('[data-run="tickets-bad"]')
            reason = DAMAGES["metrics string loss"][2]
            expect(bad.locator(".jp-Finetune-damage")).to_contain_text(f"{reason}. Fix or delete the file")
            expect(bad).to_contain_text("loss — · eval —")
            v1 = panel.locator('[data-run="tickets-v1"]')
            expect(v1).to_contain_text("smollm2-135m · step 4/4")
            expect(v1).to_contain_text("loss 1.10 · eval 1.30")
            assert v1.locator(".jp-Finetune-sparkline polyline").count() == 1

            status = page.locator(".jp-StatusBar-Widget .jp-Finetune-resources")
            expect(status).to_have_text(re.compile(r"^(\d+ GPUs|GPU) [\d.?]+/[\d.?]+ GiB$"
                                                   r"|^CPU \d+% · RAM [\d.]+/[\d.]+ GiB$"))

            log(store.get("tickets-v2"), 3, 8, 2.0)  # the run trains on: the sidebar follows
            expect(panel.locator('[data-run="tickets-v2"]')).to_contain_text("step 3/8", timeout=30_000)
            shot(page, "sidebar-light")

            v1.click()
            view = page.locator("#jupyter-finetune-run-tickets-v1")
            expect(view).to_be_visible()
            expect(view.locator(".jp-Finetune-view-title .jp-Finetune-badge")).to_have_text("completed")
            chart = view.locator(".jp-Finetune-chart")
            expect(chart.locator("polyline.jp-Finetune-train")).to_have_count(1)
            expect(chart.locator("circle.jp-Finetune-train")).to_have_count(4)
            expect(chart.locator("circle.jp-Finetune-eval")).to_have_count(2)
            tables = view.locator("table.jp-Finetune-table")
            expect(tables).to_have_count(3)  # evaluation, settings, data
            for row in ("fine-tuned 1.00 12 0.500 18.0", "base 0.00 12 0.500 18.0"):
                expect(tables.nth(0).get_by_role("row", name=row, exact=True)).to_be_visible()
            expect(tables.nth(0).locator("th").nth(1)).to_have_text("json_fields")
            expect(view.locator(".jp-Finetune-verdict")).to_contain_text("passes")
            for table, row in [(1, "preset quick"), (1, "steps 4"), (1, "backend hf on cpu"), (1, "train.backend auto"),
                               (2, f"version {tickets().version}")]:
                expect(tables.nth(table).get_by_role("row", name=row, exact=True)).to_be_visible()
            shot(page, "run-view-light")

            panel.locator('[data-run="tickets-v2"]').click()
            live = page.locator("#jupyter-finetune-run-tickets-v2")
            expect(live.locator("circle.jp-Finetune-train")).to_have_count(3)
            log(store.get("tickets-v2"), 4, 8, 1.9)
            expect(live.locator("circle.jp-Finetune-train")).to_have_count(4, timeout=30_000)
            log(store.get("tickets-v2"), 4, 8, None, 1.95)  # an eval record at a step the view has seen
            expect(live.locator("circle.jp-Finetune-eval")).to_have_count(1, timeout=30_000)
            expect(live.locator("circle.jp-Finetune-train")).to_have_count(4)
            expect(live.locator(".jp-Finetune-view-head")).to_contain_text("step 4/8")
            resumed = store.get("tickets-v2")  # killed, resumed from its checkpoint at step 2: attempt 2 logs step 3
            resumed.append_metrics({"step": 3, "max_steps": 8, "loss": 1.5, "attempt": 2})
            resumed.set_status("running", step=3, max_steps=8)
            expect(live.locator("circle.jp-Finetune-train")).to_have_count(3, timeout=30_000)
            expect(live.locator("circle.jp-Finetune-eval")).to_have_count(0)

            bad.click()
            broken = page.locator("#jupyter-finetune-run-tickets-bad")
            expect(broken.locator(".jp-Finetune-view-title .jp-Finetune-badge")).to_have_text("damaged")
            expect(broken.locator(".jp-Finetune-damage")).to_contain_text(reason)
            expect(broken.locator("table.jp-Finetune-table")).to_have_count(2)  # settings and data still shown

            page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
            expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
            page.locator('.lm-DockPanel-tabBar li[data-id="jupyter-finetune-run-tickets-v1"]').click()
            expect(view).to_be_visible()
            page.wait_for_timeout(500)  # the theme's CSS variables settle
            shot(page, "run-view-dark")
        finally:
            browser.close()
