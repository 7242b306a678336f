"""%ft_export and api.export: a run name in, the export and its record out, fixable errors as UsageError."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from export_fixtures import tiny_run
from jupyter_finetune import api
from jupyter_finetune.export import ExportExists
from helpers import run_cell


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_tokenizer):
    run, _ = tiny_run(tmp_path_factory.mktemp("api"), tiny_tokenizer, name="tickets-v1")
    return run


@pytest.fixture()
def workdir(trained):
    """The shell's folder: its ./ft_runs is the run store, as in a notebook."""
    return trained.path.parent.parent


def test_api_export_finds_the_run_in_the_store(trained):
    result = api.export("tickets-v1", "gguf", quant="q8_0", runs_dir=trained.path.parent)
    assert result.path == trained.path / "export" / "gguf" / "tickets-v1-q8_0.gguf" and result.path.is_file()
    with pytest.raises(ExportExists, match="--overwrite"):
        api.export("tickets-v1", "gguf", quant="q8_0", runs_dir=trained.path.parent)


def test_package_level_export_is_the_function_even_after_the_subpackage_is_imported(trained, tmp_path):
    import jupyter_finetune as ft

    result = ft.export("tickets-v1", "adapter", out=tmp_path / "adapter", runs_dir=trained.path.parent)
    assert callable(ft.export) and (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert "base model" in (tmp_path / "adapter" / "README.md").read_text().lower() and result.kind == "adapter"


def test_ft_export_shows_what_it_wrote_and_the_ollama_command(shell, trained):
    result, shown, _ = run_cell(shell, "%ft_export tickets-v1 --to ollama --quant q8_0 --overwrite")
    folder = trained.path / "export" / "ollama"
    assert f"exported run 'tickets-v1' as ollama (q8_0) to {folder}" in shown
    assert "Modelfile" in shown and "tickets-v1-q8_0.gguf" in shown
    assert f"next, run: cd {folder} && ollama create tickets-v1 -f Modelfile" in shown
    assert result.kind == "ollama" and result.command in shown
    assert any(r["kind"] == "ollama" and r["quant"] == "q8_0" for r in trained.exports())


def test_ft_export_writes_to_out_and_refuses_to_overwrite_without_the_flag(shell, tmp_path):
    with capture_output():
        shell.run_line_magic("ft_export", f"tickets-v1 --to merged --out {tmp_path / 'merged'}")
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    with pytest.raises(UsageError, match=r"already exists: pass --overwrite"):
        shell.run_line_magic("ft_export", f"tickets-v1 --to merged --out {tmp_path / 'merged'}")


def test_ft_export_to_a_folder_that_cannot_be_made_is_a_usage_error_naming_it(shell, tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    with pytest.raises(UsageError, match=rf"^{tmp_path}/notes.txt/adapter: cannot write the export here \(a file is in "
                                         rf"the way: {tmp_path}/notes.txt\) — move that file, or choose another path "
                                         r"\(--out\)$"):
        shell.run_line_magic("ft_export", f"tickets-v1 --out {tmp_path / 'notes.txt' / 'adapter'}")
    assert (tmp_path / "notes.txt").read_text() == "not a folder"


@pytest.mark.parametrize(("line", "message"), [
    ("nosuchrun --to adapter", r"no run named 'nosuchrun'"),
    ("tickets-v1 --to onnx", r"invalid choice: 'onnx'"),
    ("tickets-v1 --to gguf --quant q4_k", r"invalid choice: 'q4_k'"),
])
def test_ft_export_turns_mistakes_into_usage_errors(shell, line, message):
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("ft_export", line)
