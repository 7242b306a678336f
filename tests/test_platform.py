"""In a venv holding a platform's preinstalled packages (.ci/platform.sh builds it from tests/envs/NAME.txt
and installs the wheel into it): the quickstart notebook runs as written, in a real kernel of that venv,
on CPU with the packaged model, and the saved notebook keeps each cell's static record."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from packaging.utils import canonicalize_name

from envs.derive import pins
from helpers import cell_outputs

ROOT = Path(__file__).parents[1]
# The Jupyter stack the platform's kernel runs on, and the libraries training loads.
STACK = ("ipython", "ipykernel", "ipywidgets", "jupyter_client", "traitlets", "tornado", "torch", "transformers",
         "peft", "datasets", "accelerate")

pytestmark = [pytest.mark.slow, pytest.mark.smollm2, pytest.mark.platform]


@pytest.fixture()
def platform(request) -> str:
    return request.config.getoption("--platform")


def test_this_venv_holds_the_platforms_versions(platform):
    pinned, _, _ = pins((ROOT / "tests" / "envs" / f"{platform}.txt").read_text().splitlines())
    for name in STACK:
        version = pinned[canonicalize_name(name)].split("==")[1]
        assert metadata.version(name) == version, f"{name}: {platform} pins {version}"


@pytest.mark.timeout(2400)  # about 4 minutes on 2 idle cores; a busy machine makes it several times that
def test_quickstart_notebook_runs_in_the_platforms_kernel(platform, tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    path = tmp_path / "examples" / "quickstart.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=2400, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)

    saved = nbformat.read(path, as_version=4)
    load, data, train, _, evaluate, _, export = saved.cells[1:]
    assert not any(o.get("output_type") == "error" for cell in saved.cells for o in cell.get("outputs", []))
    assert "216" in cell_outputs(data) and "24" in cell_outputs(data)
    assert "completed" in cell_outputs(train) and "30" in cell_outputs(train)
    assert "retrieval" in cell_outputs(evaluate) and "recommendation: " in cell_outputs(evaluate)
    assert "Modelfile" in cell_outputs(export)
    run = path.parent / "ft_runs" / "tickets-v1"
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert any((run / "export").rglob("*.gguf"))
