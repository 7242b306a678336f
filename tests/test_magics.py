"""The magics, driven through a real IPython shell as a notebook user would."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from helpers import WIDGET_VIEW, assert_no_controls, chat, good_rows, jsonl, run_cell


@pytest.mark.slow
def test_load_ext_is_fast_and_imports_no_torch():
    code = ("import sys, time; from IPython.core.interactiveshell import InteractiveShell; ip = InteractiveShell.instance();"
            "t = time.perf_counter(); ip.run_line_magic('load_ext', 'jupyter_finetune'); dt = time.perf_counter() - t;"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'trl', 'peft') if m in sys.modules];"
            "print(dt, heavy, 'ft_data' in ip.magics_manager.magics['cell'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert float(out[0]) < 1.0
    assert out[1].strip() == "[] True"


def test_cell_magic_stores_the_dataset_in_the_notebook_and_writes_no_file(shell, tmp_path, tiny_model_dir):
    value, shown, published = run_cell(shell, f"%%ft_data tickets --split 0.1 --model {tiny_model_dir}\n"
                                              + jsonl(good_rows(60)))
    ds = shell.user_ns["tickets"]
    assert value is ds and (len(ds.train), len(ds.test)) == (54, 6)
    assert list(tmp_path.iterdir()) == []  # a run keeps its own copy of the data when it trains
    assert shown.startswith(f"<FtDataset 'tickets' v{ds.version}: 54 train / 6 test") and "OpenAI fine-tuning" in shown
    assert published == []  # shown once, as the cell's value


def test_data_set_shows_as_the_html_report_in_a_notebook(shell, tiny_model_dir):
    from jupyter_finetune.ui.data_report import report_html

    shell.user_ns["rows"] = good_rows(60)
    ds, shown, _ = run_cell(shell, f"ds = %ft_data tickets --from rows --model {tiny_model_dir}")
    assert shown == "" and ds is None and shell.user_ns["ds"] is shell.user_ns["tickets"]
    formats = shell.display_formatter.format(shell.user_ns["ds"])[0]
    assert formats["text/html"] == report_html(shell.user_ns["ds"])
    assert formats["text/plain"] == repr(shell.user_ns["ds"])


def test_line_magic_reads_a_file_and_a_dataframe_variable(shell, tmp_path, tiny_model_dir):
    (tmp_path / "t.jsonl").write_text(jsonl(good_rows(60)))
    shell.user_ns["df"] = pd.DataFrame([{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(30)])
    with capture_output():
        shell.run_line_magic("ft_data", f"from_file --from t.jsonl --model {tiny_model_dir}")
        shell.run_line_magic("ft_data", f"from_df --from df --split 0 --model {tiny_model_dir}")
    assert len(shell.user_ns["from_file"].train) == 54
    assert shell.user_ns["from_df"].format == "prompt_completion" and len(shell.user_ns["from_df"].train) == 30


def test_split_accepts_an_explicit_test_file(shell, tmp_path, tiny_model_dir):
    (tmp_path / "test.jsonl").write_text(jsonl([chat(i) for i in range(100, 110)]))
    with capture_output():
        shell.run_cell_magic("ft_data", f"t --split test.jsonl --model {tiny_model_dir}", jsonl(good_rows(60)))
    assert (len(shell.user_ns["t"].train), len(shell.user_ns["t"].test)) == (60, 10)


def test_bad_rows_raise_a_usage_error_naming_them_and_store_nothing(shell, tmp_path, tiny_model_dir):
    rows = good_rows(60)
    rows[4] = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(UsageError, match=r"row 5 \[role\]: the last message is from 'user'"):
        shell.run_cell_magic("ft_data", f"bad --model {tiny_model_dir}", jsonl(rows))
    assert "bad" not in shell.user_ns
    assert not (tmp_path / "ft_data").exists()


def test_where_widgets_render_a_data_set_shows_its_report_then_the_example_browser(shell, tiny_model_dir,
                                                                                   monkeypatch):
    from jupyter_finetune.ui import display
    from jupyter_finetune.ui.data_report import report_html

    monkeypatch.setattr(display, "widgets_available", lambda: True)
    display.register(shell)
    shell.user_ns["rows"] = good_rows(60)
    ds, _, published = run_cell(shell, f"%ft_data tickets --from rows --model {tiny_model_dir}")
    report, browser = published
    assert report.data == {"text/plain": repr(ds), "text/html": report_html(ds)}
    assert_no_controls(report.data["text/html"])
    assert set(browser.data) == {"text/plain", WIDGET_VIEW}  # where the widget cannot render, text: no dead controls
    assert browser.data["text/plain"] == ("Example browser of tickets (54 train / 6 test examples): a widget, live while "
                                          "the kernel runs; the report above shows train example 1 as training sees it")


def test_widgets_render_in_ipykernels_shell_and_its_subclasses_such_as_colabs(monkeypatch):
    """The same test makes a top-level %ft_train awaited there (magics.register), so Stop works on Colab."""
    import IPython
    from ipykernel.zmqshell import ZMQInteractiveShell

    from jupyter_finetune.ui.env import in_kernel, widgets_available

    class Shell(ZMQInteractiveShell):  # google.colab._shell.Shell
        def __init__(self) -> None:  # no kernel behind it: only its class matters
            pass

    for shell, renders in ((Shell(), True), (ZMQInteractiveShell.__new__(ZMQInteractiveShell), True), (None, False)):
        monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
        assert widgets_available() is renders
        assert in_kernel(shell) is renders
    monkeypatch.undo()
    assert not widgets_available()  # a terminal's shell, or none


def test_bad_rows_show_as_an_html_table_only_where_html_renders(shell, tiny_model_dir):
    rows = good_rows(60)
    rows[4] = {"messages": [{"role": "user", "content": "hi"}]}
    with capture_output() as cap:
        result = shell.run_cell(f"%%ft_data bad --model {tiny_model_dir}\n" + jsonl(rows))
    assert isinstance(result.error_in_exec, UsageError)
    [table] = cap.outputs  # a terminal shows no text/html: there the error's own text lists the rows
    assert set(table.data) == {"text/html"} and "<td>5</td>" in table.data["text/html"]


def test_ft_stop_logs_what_it_stops_and_takes_one_optional_run(shell, caplog, monkeypatch):
    from jupyter_finetune import api

    monkeypatch.setattr(api, "_JOBS", {})  # jobs other tests left in this process are not this kernel's
    with caplog.at_level(logging.INFO, logger="jupyter_finetune"):
        assert shell.run_line_magic("ft_stop", "") == []
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("jupyter_finetune.magics", "nothing is training")]
    with pytest.raises(UsageError, match=r"no run named 'nope' is training in this kernel \(running: none\)"):
        shell.run_line_magic("ft_stop", "nope")
    with pytest.raises(UsageError, match="unrecognized arguments: b"):
        shell.run_line_magic("ft_stop", "a b")


def test_messages_print_in_a_script_until_silenced():
    code = ("import logging; from IPython.core.interactiveshell import InteractiveShell; ip = InteractiveShell.instance();"
            "ip.run_line_magic('load_ext', 'jupyter_finetune'); ip.run_line_magic('ft_stop', '');"
            "logging.getLogger('jupyter_finetune').setLevel(logging.WARNING); ip.run_line_magic('ft_stop', '')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (out.stdout, out.stderr) == ("nothing is training\n", "")


def test_usage_errors_say_what_to_do(shell, tiny_model_dir):
    with pytest.raises(UsageError, match="either in the cell body"):
        shell.run_line_magic("ft_data", "x")
    with pytest.raises(UsageError, match="no such file"):
        shell.run_line_magic("ft_data", "x --from missing.jsonl")
    with pytest.raises(UsageError, match="did you mean 'smollm2-135m'"):
        shell.run_cell_magic("ft_data", "x --model smolm2-135m", jsonl(good_rows(20)))
    with pytest.raises(UsageError, match="invalid choice"):
        shell.run_cell_magic("ft_data", "x --format csv", jsonl(good_rows(20)))


def test_a_file_in_the_way_of_the_run_store_is_a_usage_error_naming_it(shell, shell_tickets, tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    with pytest.raises(UsageError, match=r"notes.txt/ft_runs: cannot create a run in this run store \(a file is in "
                                         r"the way: .*notes.txt\) — move that file, or choose another path "
                                         r"\(--runs-dir, or \$JUPYTER_FINETUNE_RUNS\)"):
        shell.run_line_magic("ft_train", "tickets --steps 1 --runs-dir notes.txt/ft_runs")
    with pytest.raises(UsageError, match=r"^notes.txt: a file, not a folder — point the run store at a folder"):
        shell.run_line_magic("ft_runs", "--runs-dir notes.txt")


def test_a_folder_named_like_a_data_file_is_a_usage_error_naming_it(shell, tmp_path):
    (tmp_path / "x.jsonl").mkdir()
    with pytest.raises(UsageError, match=r"^x.jsonl: a folder, not a file — give the path of a "
                                         r"\.jsonl/\.json/\.csv/\.parquet file$"):
        shell.run_line_magic("ft_data", "x --from x.jsonl")


def test_any_os_error_naming_a_path_is_a_usage_error_with_the_path_and_a_fix(shell):
    """The catch-all for what no layer words itself: here the operating system refuses a file name of 300 bytes."""
    name = "a" * 300 + ".jsonl"
    with pytest.raises(UsageError, match=rf"^{name}: the name is too long — choose a shorter path$"):
        shell.run_line_magic("ft_data", f"x --from {name}")


def test_magic_help_comes_from_the_docstring_and_arguments(shell):
    doc = shell.find_line_magic("ft_data").__doc__
    assert "--from PATH_OR_VARIABLE" in doc and "Check, count and split" in doc


def test_report_html_shows_counts_costs_problems_and_the_loss_tokens(tiny_model_dir, tmp_path, monkeypatch):
    import jupyter_finetune as ft
    from jupyter_finetune.ui.data_report import report_html

    monkeypatch.chdir(tmp_path)
    rows = good_rows(60)
    rows[30] = chat(2)
    html = report_html(ft.load_data("tickets", rows, model=str(tiny_model_dir)))
    for text in ("54 train / 6 test", "tokens per example", "gpt-4o-mini", "exact duplicate of row 3",
                 "class='loss'", "carry loss"):
        assert text in html, text


@pytest.mark.slow
def test_plain_python_api_works_without_ipython(tmp_path, tiny_model_dir):
    code = (f"import jupyter_finetune as ft, json; ds = ft.load_data('t', {json.dumps(jsonl(good_rows(20)))}, "
            f"model={str(tiny_model_dir)!r}, split=0); print(len(ds.train))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "20", out.stderr


def test_example_browser_widget_redraws_the_chosen_example(tiny_model_dir, tmp_path, monkeypatch):
    import jupyter_finetune as ft
    from jupyter_finetune.ui.data_report import browser

    monkeypatch.chdir(tmp_path)
    ds = ft.load_data("tickets", good_rows(60), model=str(tiny_model_dir))
    panel = browser(ds)
    split, index = panel.children[1].children
    out = panel.children[2]
    index.value = 3
    assert f"source row {ds.train[2].row}" in out.value and "class='loss'" in out.value
    split.value = "test"
    assert f"source row {ds.test[2].row}" in out.value
    assert index.max == len(ds.test)


def test_a_trailing_comment_on_a_magic_line_is_ignored_but_a_quoted_hash_is_kept(shell, monkeypatch):
    from jupyter_finetune import api
    from jupyter_finetune.magics import without_comment

    monkeypatch.setattr(api, "_JOBS", {})  # jobs other tests left in this process are not this kernel's
    with capture_output():
        names = shell.run_line_magic("ft_stop", "  # nothing named: stops every run of this kernel")
    assert names == []
    assert without_comment('tickets-v1 --message "ticket #42 is late"  # ask') == 'tickets-v1 --message "ticket #42 is late"'
    assert without_comment("x --target-modules q#k") == "x --target-modules q#k"
