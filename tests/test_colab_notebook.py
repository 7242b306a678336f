"""examples/colab_kaggle_gpu.ipynb runs end to end in a real kernel on CPU, with the packaged SmolLM2
named in its parameters cell, as it would on a Colab CPU runtime (the GPU run is in bench/results/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import cell_outputs

NOTEBOOK = Path(__file__).parents[1] / "examples" / "colab_kaggle_gpu.ipynb"
CPU_PARAMETERS = ('MODEL = "smollm2-135m"\nQUANT = "none"\nDATA = None\nSTEPS = 2\nBATCH_SIZE = 4\nLR = 1e-3\n'
                  "EVAL_ROWS = 3")



@pytest.mark.slow
@pytest.mark.smollm2
def test_colab_notebook_runs_on_cpu_with_the_packaged_model_named_in_its_parameters_cell(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "MODEL = " in parameters[0].source
    parameters[0].source = CPU_PARAMETERS
    shutil.copy(NOTEBOOK, tmp_path)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    install, _, check, _, plan, data, train, _, evaluate, _, export = notebook.cells[1:]
    assert "pip" in install.source and not install.outputs  # installed already: nothing to do
    assert "No GPU: training runs on CPU" in cell_outputs(check)
    assert "fits" in cell_outputs(plan)
    assert "tickets" in cell_outputs(data) and "216" in cell_outputs(data)
    assert "backend hf: no CUDA GPU" in cell_outputs(train) and "completed" in cell_outputs(train)
    assert "fine-tuned" in cell_outputs(evaluate) and "base" in cell_outputs(evaluate)
    assert "Modelfile" in cell_outputs(export)
    run = tmp_path / "ft_runs" / "tickets-gpu"
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert any((run / "export").rglob("Modelfile")) and any((run / "export").rglob("*.gguf"))
