"""The preference example: its data is what its generator writes, the package ships the same file, and
examples/preference.ipynb runs SFT -> DPO -> evaluation in a real kernel with the packaged SmolLM2."""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path

import pytest

import jupyter_finetune as ft
from helpers import cell_outputs

EXAMPLES = Path(__file__).parents[1] / "examples"
DATA = EXAMPLES / "data" / "ticket_preferences.jsonl"


def test_the_example_pairs_are_their_generators_output_and_the_package_ships_the_same(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES / "data"))
    generator = importlib.import_module("make_ticket_preferences")
    generator.main(out=tmp_path / "pairs.jsonl")
    assert (tmp_path / "pairs.jsonl").read_bytes() == DATA.read_bytes()
    assert ft.example_data("ticket_preferences").read_bytes() == DATA.read_bytes()


def test_the_example_pairs_read_clean_as_openai_preference_data_without_a_length_bias(tiny_tokenizer,
                                                                                     tiny_model_dir):
    from jupyter_finetune.data import prepare, read_text

    data = prepare(read_text(DATA.read_text()), name="prefs", tokenizer=tiny_tokenizer, model=str(tiny_model_dir),
                   split=0.2)
    assert data.is_preference and data.format == "preference" and (len(data.train), len(data.test)) == (128, 32)
    assert [w.code for w in data.warnings if w.code == "length_bias"] == []  # prepare raises on any error


@pytest.mark.slow
@pytest.mark.smollm2
def test_the_preference_notebook_runs_sft_then_dpo_then_evaluation_in_a_real_kernel(tmp_path):
    """Every cell as shipped, with two steps per training cell (its own lengths take ten minutes here)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(EXAMPLES / "preference.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.source.split()[0] for c in code] == ["%load_ext", "%ft_data", "%ft_train", "%ft_train", "%ft_eval"]
    for cell in code:
        if cell.source.startswith("%ft_train"):
            cell.source = re.sub(r"--epochs \d+ ", "", cell.source) + " --steps 2"
    (tmp_path / "data").mkdir()
    shutil.copy(DATA, tmp_path / "data")
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    _, data, sft, dpo, evaluation = (cell_outputs(c) for c in code)
    assert "preference" in data and "128" in data and "error" not in data.lower()
    assert "completed" in sft and "completed" in dpo
    assert re.search(r"preference accuracy on 32 held-out pairs: base [\d.]+ -> sft \(prefs-sft\) [\d.]+ -> "
                     r"fine-tuned \(dpo\) [\d.]+", evaluation), evaluation[-3000:]
    runs = tmp_path / "ft_runs"
    assert (runs / "prefs-dpo" / "start-adapter" / "adapter_config.json").is_file()
