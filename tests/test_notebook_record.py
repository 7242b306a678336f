"""In a real Jupyter kernel, what a saved notebook keeps of the panels: a static record where a panel
finished, text where a widget is still live, whatever ipywidgets (7 or 8) and ipykernel (6 or 7) run.

nbclient applies each display update to the output shown under its display id, as a front end does.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import WIDGET_VIEW, assert_no_controls, good_rows, jsonl

pytestmark = pytest.mark.slow  # a real kernel


def test_a_saved_notebook_keeps_the_training_record_and_text_for_the_live_browser(tmp_path, tiny_model_dir):
    cells = ["%load_ext jupyter_finetune",
             f"%%ft_data tickets --model {tiny_model_dir}\n{jsonl(good_rows(60))}",
             "%ft_train tickets --steps 3 --batch-size 4 --name k"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    _, data, train = ([o.get("data", {}) for o in cell.outputs if "data" in o] for cell in notebook.cells)

    report, browser = data
    assert_no_controls(report["text/html"])
    assert set(browser) == {"text/plain", WIDGET_VIEW}
    assert browser["text/plain"].startswith("Example browser of tickets (54 train / 6 test examples): a widget")

    settings, record, result = train  # the live dashboard was replaced by its record
    assert settings["text/plain"].startswith("k: backend hf") and "<summary>settings" in settings["text/html"]
    assert set(record) == {"text/plain", "text/html"} and "data:image/png;base64," in record["text/html"]
    assert record["text/plain"].startswith("k: completed") and "step 3/3" in record["text/plain"]
    assert_no_controls(settings["text/html"] + record["text/html"])
    assert result["text/plain"].startswith("<TrainResult k: completed")
