"""%ft_runs: every run of the store in one table, and chosen runs compared, on real tiny runs."""

from __future__ import annotations

import json
import os
from html import escape
import re
import signal
import subprocess
import sys

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.runs import RunStore
from jupyter_finetune.ui.runs_view import comparison_html, overlay_figure, runs_html
from helpers import good_rows, run_cell
from store_builders import DAMAGES, completed_and_training, damage

COMMON = dict(steps=2, batch_size=8, alpha=16, dropout=0.0)  # 16 train rows: an eval at step 2


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """A store with two trained runs that differ in lr and rank, one evaluated, and a killed one (newest)."""
    root = tmp_path_factory.mktemp("store") / "ft_runs"
    data = prepare(read_records(good_rows(20)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir),
                   split=0.2)
    for name, lr, rank in (("small", 1e-3, 4), ("large", 2e-3, 8)):
        job = api.prepare_training(data, runs_dir=root, name=name, lr=lr, rank=rank, **COMMON)
        assert job.train().status == "completed"
    evals = root / "large" / "eval"
    evals.mkdir()
    (evals / "old.json").write_text(json.dumps({"data_version": "old", "systems": {"fine-tuned": {"scores": {"exact": 0.1}}}}))
    os.utime(evals / "old.json", (1, 1))
    systems = {"base": {"scores": {"exact": 0.0, "json_valid": 0.0}},
               "fine-tuned": {"scores": {"exact": 0.5, "json_valid": 1.0}}}
    (evals / "tickets.json").write_text(json.dumps({"data_version": "tickets", "systems": systems}))
    os.utime(evals / "tickets.json", (2, 2))
    (evals / "notes.json").write_text("[]")  # the newest file, but not evaluation results
    api.prepare_training(data, runs_dir=root, name="killed", steps=50, batch_size=8)
    code = (f"import time; from jupyter_finetune.runs import RunStore; run = RunStore.at({str(root)!r}).get('killed');"
            "run.set_status('running', step=1, max_steps=50); run.append_metrics({'step': 1, 'loss': 3.0});"
            "print('ready', flush=True); time.sleep(60)")
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert kernel.stdout.readline().strip() == "ready"
    kernel.send_signal(signal.SIGKILL)
    kernel.wait()
    return root


@pytest.fixture()
def workdir(root):
    """The shell's folder: its ./ft_runs is the store built above."""
    return root.parent


def _loss_records(root, name, key):
    return [(m["step"], m[key]) for m in RunStore.at(root).get(name).metrics() if m.get(key) is not None]


def test_runs_lists_every_run_newest_first_with_settings_losses_and_eval_scores(root):
    summaries = api.runs(root)
    assert [s.name for s in summaries] == ["killed", "large", "small"]
    large = summaries[1]
    version = RunStore.at(root).get("large").manifest().version
    assert (large.status, large.data, large.step, large.max_steps) == ("completed", f"tickets v{version}", 2, 2)
    assert (large.settings["lr"], large.settings["rank"], large.settings["preset"]) == (2e-3, 8, "balanced")
    assert large.last_train_loss == _loss_records(root, "large", "loss")[-1][1]
    assert large.best_eval_loss == min(v for _, v in _loss_records(root, "large", "eval_loss"))
    assert large.eval_scores == {"exact": 0.5, "json_valid": 1.0}  # the newest results, the fine-tuned system
    assert summaries[2].eval_scores == {} and summaries[2].best_eval_loss is not None


def test_a_run_whose_kernel_died_shows_as_interrupted(root):
    killed = api.runs(root)[0]
    assert (killed.name, killed.status, killed.step, killed.last_train_loss) == ("killed", "interrupted", 1, 3.0)
    assert ">interrupted</span>" in runs_html([killed])


def test_ft_runs_shows_the_table_in_a_terminal(shell):
    _, shown, _ = run_cell(shell, "%ft_runs")
    head, *rows = shown.strip().splitlines()
    assert head.split()[:4] == ["run", "status", "model", "data"]
    assert [r.split()[:2] for r in rows] == [["killed", "interrupted"], ["large", "completed"], ["small", "completed"]]
    assert "exact 0.50, json_valid 1.00" in rows[1] and "2 steps" in rows[1] and "1/50" in rows[0]


def test_comparing_runs_highlights_exactly_the_settings_that_differ(shell, root):
    comparison = api.compare_runs(["small", "large"], root)
    assert comparison.differing == ("lr", "rank")
    assert comparison.settings["rank"] == (4, 8) and comparison.settings["alpha"] == (16, 16)
    highlighted = re.findall(r"<tr class='differs'[^>]*><th[^>]*>([^<]+)</th>", comparison_html(comparison))
    assert highlighted == ["lr", "rank"]
    _, shown, _ = run_cell(shell, "%ft_runs small large")
    marked = [line.split()[1] for line in shown.splitlines() if line.startswith("* ")]
    assert marked == ["lr", "rank"]


def test_assigned_runs_are_kept_and_show_as_html_in_a_notebook(shell, root):
    value, shown, published = run_cell(shell, "runs = %ft_runs")
    runs = shell.user_ns["runs"]
    assert (value, shown, published) == (None, "", [])
    assert [r.name for r in runs] == ["killed", "large", "small"] and runs[1].eval_scores["exact"] == 0.5
    assert shell.display_formatter.format(runs)[0]["text/html"] == runs_html(runs)
    comparison = shell.run_line_magic("ft_runs", "small large")
    assert shell.display_formatter.format(comparison)[0]["text/html"].startswith("<div><table")


def test_overlay_plot_has_one_line_per_run_and_curve(root):
    comparison = api.compare_runs(["small", "large"], root)
    lines = overlay_figure(comparison.curves).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["small train", "small eval", "large train", "large eval"]
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    colours = [line.get_color() for line in lines]
    assert colours[0] == colours[1] != colours[2] == colours[3]
    assert list(zip(lines[2].get_xdata(), lines[2].get_ydata())) == _loss_records(root, "large", "loss")
    assert list(zip(lines[3].get_xdata(), lines[3].get_ydata())) == _loss_records(root, "large", "eval_loss")
    assert "<img src='data:image/png;base64," in comparison_html(comparison)


def test_unknown_run_names_the_known_runs(shell, tmp_path):
    with pytest.raises(UsageError, match=r"no run named 'nope'.*runs: killed, large, small"):
        shell.run_line_magic("ft_runs", "small nope")
    _, shown, _ = run_cell(shell, f"%ft_runs --runs-dir {tmp_path / 'empty'}")
    assert "no runs in" in shown and "%ft_train" in shown


@pytest.mark.parametrize("case", ["string step", "status is a list", "metrics string loss", "config epochs"])
def test_ft_runs_lists_a_damaged_run_with_its_reason_and_compares_it(shell, tmp_path, case):
    file, change, reason = DAMAGES[case]
    store = RunStore.at(tmp_path / "runs")
    completed_and_training(store, [(1, 2.0, None), (2, 1.5, 1.6)])
    damage(store.get("tickets-v1"), file, change)
    _, shown, _ = run_cell(shell, f"%ft_runs --runs-dir {store.root}")
    rows = dict(line.split()[:2] for line in shown.splitlines() if line.startswith("tickets-"))
    assert rows == {"tickets-v1": "damaged", "tickets-v2": "running"}
    assert f"  tickets-v1: {reason}" in shown and "--overwrite" in shown
    html = runs_html(api.runs(store.root))
    assert ">damaged</span>" in html and f"<li>tickets-v1: {escape(reason)}" in html
    _, compared, _ = run_cell(shell, f"%ft_runs tickets-v1 tickets-v2 --runs-dir {store.root}")
    assert f"  tickets-v1: {reason}" in compared
    assert "<img src='data:image/png;base64," in comparison_html(api.compare_runs(["tickets-v1", "tickets-v2"],
                                                                                  store.root))
