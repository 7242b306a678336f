"""Backend choice on a machine without a GPU: what runs, what is refused and why, and that unsloth
(which patches transformers and TRL at import) is imported only when it is chosen."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from jupyter_finetune import api
from jupyter_finetune.engine import ConfigError, build_config
from jupyter_finetune.engine.backends import HFBackend, select_backend
from jupyter_finetune.models import ModelNotFound, resolve_model
from helpers import good_rows, jsonl

# unsloth's own requirement lines (2026.10.9) that decide whether its patches apply, made impossible
# here where they name transformers and trl, plus lines whose markers exclude them on this machine.
UNSLOTH_METADATA = """Metadata-Version: 2.1
Name: unsloth
Version: 2026.10.9
Requires-Dist: torch<2.15.0,>=2.4.0
Requires-Dist: transformers<=4.0
Requires-Dist: trl!=0.19.0,<=0.1
Requires-Dist: triton-windows; sys_platform == "win32"
Requires-Dist: fastapi==0.141.1; extra == "studio"
Requires-Dist: tyro
"""


@pytest.fixture()
def unsloth_probe(tmp_path) -> Path:
    """A folder for sys.path holding an ``unsloth`` distribution whose import leaves a mark on disk."""
    site = tmp_path / "site"
    (site / "unsloth").mkdir(parents=True)
    (site / "unsloth" / "__init__.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\nraise ImportError('probe only')\n")
    (site / "unsloth-2026.10.9.dist-info").mkdir()
    (site / "unsloth-2026.10.9.dist-info" / "METADATA").write_text(UNSLOTH_METADATA)
    return site


def test_auto_on_cpu_trains_with_hf_and_says_why():
    backend, reason = select_backend(build_config(backend="auto"))
    assert isinstance(backend, HFBackend)
    assert reason == "hf: no CUDA GPU, so transformers + peft LoRA in fp32 on CPU"


@pytest.mark.slow
def test_auto_never_imports_unsloth_when_it_is_not_chosen(unsloth_probe, tmp_path):
    code = ("import sys; from jupyter_finetune.engine import build_config; "
            "from jupyter_finetune.engine.backends import select_backend; "
            "print(select_backend(build_config(backend='auto'))[1]); print('unsloth' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(unsloth_probe), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["hf: no CUDA GPU, so transformers + peft LoRA in fp32 on CPU", "False"]
    assert not (tmp_path / "imported").exists()


def test_unsloth_without_gpu_or_package_says_both_and_the_fix(monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not Path(p, "unsloth").exists()])
    with pytest.raises(ConfigError) as caught:
        select_backend(build_config(backend="unsloth"))
    assert str(caught.value) == (
        "--backend unsloth cannot run here:\n"
        "  - this kernel has no CUDA GPU (unsloth trains on NVIDIA GPUs)\n"
        '  - unsloth is not installed (pip install "jupyter-finetune[unsloth]")\n'
        "Fix: run on an NVIDIA GPU (Colab or Kaggle: pick a GPU runtime); "
        "or use --backend auto (or hf) to train with transformers + peft")


def test_unsloth_with_wrong_library_versions_names_each_one_without_importing_it(unsloth_probe, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.syspath_prepend(str(unsloth_probe))
    with pytest.raises(ConfigError) as caught:
        select_backend(build_config(backend="unsloth"))
    problems = str(caught.value).splitlines()[1:-1]
    assert problems == [
        "  - this kernel has no CUDA GPU (unsloth trains on NVIDIA GPUs)",
        f"  - unsloth 2026.10.9 needs transformers<=4.0 ({version('transformers')} is installed)",
        f"  - unsloth 2026.10.9 needs trl!=0.19.0,<=0.1 ({version('trl')} is installed)",
    ]
    assert "unsloth" not in sys.modules and not (tmp_path / "imported").exists()


def test_4bit_on_cpu_is_refused_before_anything_loads():
    with pytest.raises(ConfigError, match=r"--quant 4bit needs an NVIDIA GPU \(bitsandbytes\); this kernel has "
                                          r"none. Use --quant none on CPU."):
        select_backend(build_config(quant="4bit", backend="unsloth"))


def test_4bit_on_a_gpu_without_bitsandbytes_names_the_extra_that_brings_it(monkeypatch):
    from jupyter_finetune.engine import backends

    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not Path(p, "bitsandbytes").exists()])
    with pytest.raises(ConfigError, match=r'--quant 4bit needs bitsandbytes: pip install "jupyter-finetune\[gpu\]" '
                                          r'\(or pip install "jupyter-finetune\[unsloth\]"\), then restart'):
        select_backend(build_config(quant="4bit", backend="hf"))


@pytest.mark.usefixtures("shell_tickets")
def test_ft_train_backend_unsloth_on_cpu_is_a_usage_error_and_writes_no_run(shell, tmp_path):
    with pytest.raises(UsageError, match=r"--backend unsloth cannot run here:\n  - this kernel has no CUDA GPU"):
        shell.run_line_magic("ft_train", "tickets --backend unsloth --name u")
    assert not (tmp_path / "ft_runs" / "u").exists()


@pytest.fixture()
def saved_4bit_model(tmp_path, tiny_model_dir) -> Path:
    """The tiny model's folder with the quantization_config that unsloth's -bnb-4bit uploads carry."""
    folder = tmp_path / "tiny-bnb-4bit"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                     "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_saved_in_4bit_trains_as_qlora_and_refuses_other_precisions(saved_4bit_model, tiny_model_dir,
                                                                            tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = api.load_data("t", jsonl(good_rows(40)), model=str(tiny_model_dir))
    with pytest.raises(ConfigError, match="--quant 4bit needs an NVIDIA GPU"):
        api.prepare_training(data, model=str(saved_4bit_model), name="q")
    with pytest.raises(ConfigError, match=r"tiny-bnb-4bit is saved with 4bit bitsandbytes weights, so it trains "
                                          r"with --quant 4bit only \(got --quant none\)"):
        api.prepare_training(data, model=str(saved_4bit_model), quant="none", name="q")
    assert not (tmp_path / "ft_runs" / "q").exists()
    plan = api.plan(str(saved_4bit_model), data, gpu="T4")
    assert plan.settings.quant == "4bit" and plan.recommendation.settings.quant == "4bit"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_hub_id_not_cached_is_downloaded_when_online_and_a_failure_says_where_from(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path), "HF_HOME": str(tmp_path / "home"),
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    env.pop("HF_HUB_OFFLINE", None)
    code = ("from jupyter_finetune.models import ModelNotFound, resolve_model\n"
            "try:\n    resolve_model('unsloth/tiny-bnb-4bit')\nexcept ModelNotFound as e:\n    print(e)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"'unsloth/tiny-bnb-4bit' is not a local folder and could not be downloaded from {endpoint}" in run.stdout
    assert "hf download unsloth/tiny-bnb-4bit" in run.stdout


def test_hub_id_offline_is_refused_naming_the_switch():
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE is set, so nothing is downloaded"):
        resolve_model("someone/not-downloaded-model")
