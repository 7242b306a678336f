"""The README of a script export: what the folder is, what to install, and the commands for each kind of machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .script import ScriptSource

PORT = 29500
"""The rendezvous port the multi-machine commands and the SLURM file use (torchrun's default)."""


def plural(n: int, word: str) -> str:
    """``1 GPU``, ``2 GPUs``; ``1 process``, ``2 processes``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def readme(source: ScriptSource, version: str, model_text: str, numbered: bool) -> str:
    """Markdown; ``numbered`` says whether the data files keep the rows' numbers (and so the data version)."""
    name, config, m = source.run.name, source.config, source.manifest
    n, per_process = config.gpus, config.batch_size * config.grad_accum
    processes, gpus = plural(n, "process"), plural(n, "GPU")
    blank = ("Blank lines in the data files keep each example on its row number in the original data (its line in a "
             "JSONL file, its position in a table): the data version counts those numbers, so `load_data` reads back "
             f"version {m.version}, the run's."
             if numbered else f"The data files number their rows anew, so their data version differs from the "
                              f"run's {m.version}; the rows and the split are the same.")
    gpu_extra = (f"\nThe run trains on {config.quant} base weights (bitsandbytes, NVIDIA GPUs only), so install the "
                 f"GPU extra instead:\n\n    pip install 'jupyter-finetune[gpu]=={version}'\n"
                 if config.quant != "none" else "")
    torchrun_note = (f"torchrun does not read `accelerate.json` and needs not: train.py hands the Trainer the "
                     f"strategy (`CONFIG['strategy']`), so torchrun starts the same {config.strategy.upper()} "
                     "processes.")
    torchrun_note += (" Keep this folder and the run store (`--runs-dir`) on a filesystem every machine sees:\n"
                      "every process reads `data/`, and rank 0 writes the run.")
    single = ("One process (one GPU, or the CPU):\n\n    python train.py" if n == 1 else
              f"`python train.py` on a machine with {gpus} launches the {processes} itself, as the notebook did "
              f"(`%ft_train --gpus {n}`); set `CONFIG[\"gpus\"] = 1` in train.py for one process.")
    return f"""# Run `{name}` as a script

This folder trains run `{name}` again, on any machine where jupyter-finetune installs: the same data,
split and settings as the notebook ran, on one process, several GPUs, several machines or SLURM, through
`accelerate launch` or `torchrun`. `%ft_export {name} --to script` wrote it (jupyter-finetune {version}).

| file | what it is |
|---|---|
| `train.py` | loads `data/` with `ft.load_data`, then calls `ft.train` with the run's exact settings (`CONFIG`, every TrainConfig field); options `--runs-dir`, `--name`, `--overwrite` |
| `data/train.jsonl`, `data/test.jsonl` | the run's copy of its data `{m.name}`, split as the run split it: {m.train_rows} train and {m.test_rows} test rows |
| `accelerate.json` | accelerate's config: {processes}, {config.strategy.upper()} |
| `train.slurm` | a SLURM batch file: nodes x {gpus} each |

{blank}

## Install (on every machine)

    pip install jupyter-finetune=={version}
{gpu_extra}
The model: {model_text}

## Run

Launch from this folder. The run goes to `./ft_runs/{name}/` (`--runs-dir DIR` for another run store,
`--name` for another name, `--overwrite` to replace a run of that name). `train.py` exits with status 1
when the run fails; `%ft_runs --runs-dir DIR` then shows the reason, and the run folder keeps the traceback.

{single}

One machine with {gpus}, one process per GPU, as the run trained:

    accelerate launch --config_file accelerate.json train.py

For another number of GPUs N, add `--num_processes N`. Each process takes `batch_size x grad_accum` =
{per_process} examples per optimizer step, so the global batch (and so the result) grows with the processes.

Several machines, M of them with N GPUs each: on every machine set `M`, `N`, its rank `R` (0 on the main
machine) and the main machine's address `IP`, then run

    accelerate launch --config_file accelerate.json --num_machines $M --machine_rank $R --main_process_ip $IP --main_process_port {PORT} --num_processes $((M * N)) train.py

or the same with torchrun:

    torchrun --nnodes $M --node_rank $R --master_addr $IP --master_port {PORT} --nproc_per_node $N train.py

{torchrun_note}

SLURM:

    sbatch train.slurm

`train.slurm` asks for 1 node with {gpus}; set `#SBATCH --nodes=M` for M nodes. `srun` starts one task per
node, and each starts {processes} with `torchrun`, meeting at the first node of the job (from
`scontrol show hostnames`) on port {PORT}.

A check of the multi-process plumbing on a machine without a GPU:

    accelerate launch --config_file accelerate.json --num_processes 2 train.py --runs-dir /tmp/ft_check

Without CUDA this starts 2 CPU processes talking over gloo: the same multi-process path, not a speed-up.
Leave out accelerate's own `--cpu`: `--cpu --num_processes 2` starts ONE process unless it runs under
`mpirun` (accelerate's multi-CPU mode is MPI).

## Read the result

The folder's result is a run store like a notebook's. Point any of these at it:

    %ft_runs --runs-dir PATH
    %ft_eval {name} --runs-dir PATH
    %ft_export {name} --to gguf --runs-dir PATH

From Python: `ft.runs("PATH")`, `ft.evaluate("{name}", runs_dir="PATH")`. The JupyterLab sidebar
("Fine-tuning") reads the run store its server is given: `jupyter lab --JupyterFinetune.runs_dir=PATH`
(or `c.JupyterFinetune.runs_dir` in its config, or `JUPYTER_FINETUNE_RUNS=PATH`).
"""
