"""The quickstart task end to end on a GPU through the magics: examples/colab_kaggle_gpu.ipynb executed in a real
kernel with the packaged SmolLM2 (nothing is downloaded) and QLoRA, the backend left to ``auto`` (unsloth where it
is installed and importable). Kept as JSON naming the GPU: the backend chosen and why, the training events the
dashboard drew (the run's metrics: steps, losses, tokens/s, memory), the run's status, the base-vs-tuned table
and the exported files. The executed notebook stays in the work folder, for its dashboard records.

    python bench/gpu_e2e.py [--steps 60] [--quant 4bit] [--eval-rows 24] [--work DIR] [--out FILE]
    python bench/gpu_e2e.py --smoke   # CPU: 2 steps, no 4-bit, 3 eval rows (the plumbing only)

``--llama-1b`` is the size users train instead, through the API in this process: a Llama-3.2-1B-shaped model
with random weights built on disk from a config (nothing is downloaded; the packaged SmolLM2 tokenizer, the
vocabulary sized to it), QLoRA-trained for ``--steps``, evaluated, chatted with, DPO-trained from that run on
the sample ticket preferences (QLoRA too, unsloth where installed) and evaluated, and exported as GGUF q4_k_m.
Each step keeps its wall time and peak GPU memory (``torch.cuda.max_memory_allocated``, reset per step), and
evaluation how the model was loaded for it (device/dtype/quant and backend).

    python bench/gpu_e2e.py --llama-1b [--steps 40] [--out FILE]   # default bench/results/gpu-e2e-llama1b-<gpu>.json
    python bench/gpu_e2e.py --llama-1b --smoke                     # CPU: a 2-layer model of the same family

The package need not be installed: the repo root is put on the kernel's path.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from demo import output_text  # noqa: E402
from results_io import report  # noqa: E402

from jupyter_finetune.runs import Run, RunStore  # noqa: E402
from jupyter_finetune.runs.store import unless_missing  # noqa: E402

NOTEBOOK = ROOT / "examples" / "colab_kaggle_gpu.ipynb"
RUN = "tickets-gpu"
"""The run name the notebook trains."""
EXECUTED = "colab_kaggle_gpu.out.ipynb"
"""Where, in the work folder, the executed notebook is kept."""


def parameters(a: argparse.Namespace) -> str:
    return (f'MODEL = "smollm2-135m"\nQUANT = "{a.quant}"\nDATA = None\nSTEPS = {a.steps}\nBATCH_SIZE = {a.batch_size}\n'
            f"LR = {a.lr}\nEVAL_ROWS = {a.eval_rows}")


def execute(a: argparse.Namespace) -> tuple[Any, float, str | None]:
    """The notebook with our parameters, run in a fresh kernel in ``a.work``; a failing cell ends the run but
    the cells before it are still reported."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    [cell] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = parameters(a)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    failed = None
    try:
        NotebookClient(notebook, timeout=a.timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(a.work)}}).execute()
    except Exception as e:  # noqa: BLE001 - any failure is part of the result
        failed = f"{type(e).__name__}: {str(e).strip()[-2000:]}"
    seconds = time.perf_counter() - start
    nbformat.write(notebook, a.work / EXECUTED)
    return notebook, seconds, failed


def cell_texts(notebook: Any) -> list[str]:
    return ["".join(output_text(o) for o in cell.get("outputs", [])) for cell in notebook.cells
            if cell.cell_type == "code"]


def training_record(run: Run) -> dict[str, Any] | None:
    """What the dashboard subscribed to, as the run store kept it; None before the first logged step."""
    records = run.metrics()
    if not records:
        return None
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    speeds = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
    settings = run.settings()
    return {"backend": settings.backend, "quant": settings.quant, "status": run.status(),
            "log_events": len(records), "eval_events": sum(r.get("eval_loss") is not None for r in records),
            "loss_first_last": [losses[0], losses[-1]] if losses else None,
            "tokens_per_s_median": sorted(speeds)[len(speeds) // 2] if speeds else None,
            "memory_gb_max": max((r.get("memory_gb") or 0 for r in records), default=None)}


def evaluation_record(run: Run) -> dict[str, Any] | None:
    """The saved %ft_eval of the run's own held-out rows (what the notebook evaluates)."""
    manifest = unless_missing(run.manifest)
    result = next((e for e in run.evaluations() if manifest and e.data_version == manifest.version), None)
    if result is None:
        return None
    return {"systems": {name: dict(s.scores) for name, s in result.systems.items()}, "verdict": result.verdict}


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072, "rope_theta": 500000.0,
            "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
"""Llama-3.2-1B's shape (its vocabulary aside): 1.0B parameters with the SmolLM2 vocabulary of 49152."""
LLAMA_SMOKE = {**LLAMA_1B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}


def build_llama(folder: Path, shape: dict[str, Any]) -> Path:
    """A random-initialised Llama of ``shape`` with the packaged SmolLM2 tokenizer, saved in bf16 (fp32 on CPU)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from jupyter_finetune.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    config = LlamaConfig(**shape, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    with torch.device("cuda" if cuda else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder


def timed(steps: dict[str, Any], name: str, work: Any) -> Any:
    """Run one step, keeping its wall time, its peak GPU memory and, if it failed, why; its value or None."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    value, failed = None, None
    try:
        value = work()
    except Exception as e:  # noqa: BLE001 - a failing step is part of the result; the next ones still run
        failed = f"{type(e).__name__}: {str(e).strip()[-1000:]}"
    steps[name] = {"seconds": round(time.perf_counter() - start, 1),
                   "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                   "failed": failed}
    return value


def llama_1b(a: argparse.Namespace) -> dict[str, Any]:
    """Build, train (QLoRA), evaluate, chat and export the 1B model through the API; each step measured."""
    from jupyter_finetune import api

    runs = a.work / "ft_runs"
    steps: dict[str, Any] = {}
    model = timed(steps, "build", lambda: build_llama(a.work / "llama-1b", LLAMA_SMOKE if a.smoke else LLAMA_1B))
    data = api.load_data("tickets", api.example_data(), model=str(model))
    name = "llama1b"
    trained = timed(steps, "train", lambda: api.prepare_training(
        data, name=name, runs_dir=runs, overwrite=True, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
        quant=a.quant).train())
    steps["train"]["status"] = getattr(trained, "status", None)
    report = timed(steps, "evaluate", lambda: api.evaluate(name, runs_dir=runs, limit=a.eval_rows, regenerate=True))
    if report is not None:
        steps["evaluate"].update(loaded=report.loaded.text() if report.loaded else None,
                                 table=report.comparison.table())
    reply = timed(steps, "chat", lambda: api.chat(name, "My invoice is wrong and I was charged twice.",
                                                    runs_dir=runs, max_new_tokens=32))
    if reply is not None:
        steps["chat"].update(base_s=reply.base_seconds, fine_tuned_s=reply.fine_tuned_seconds)
    preference(a, runs, model, name, steps)
    exported = timed(steps, "export_gguf_q4_k_m", lambda: api.export(name, "gguf", quant="q4_k_m", runs_dir=runs,
                                                                       overwrite=True))
    if exported is not None:
        steps["export_gguf_q4_k_m"]["files"] = [str(f.path) for f in exported.files]
    return {"model": "llama-3.2-1b-shaped, random weights" if not a.smoke else "2-layer llama, random weights",
            "settings": {"steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "quant": a.quant,
                         "eval_rows": a.eval_rows},
            "steps": steps, "failed": next((f"{k}: {v['failed']}" for k, v in steps.items() if v["failed"]), None)}


def preference(a: argparse.Namespace, runs: Path, model: Path, sft: str, steps: dict[str, Any]) -> None:
    """DPO from the SFT run on the example ticket preferences, at the same quantisation and backend (auto:
    unsloth where installed), then its evaluation: preference accuracy of base, SFT and DPO."""
    from jupyter_finetune import api

    pairs = api.load_data("prefs", api.example_data("ticket_preferences"), model=str(model))
    trained = timed(steps, "train_dpo", lambda: api.prepare_training(
        pairs, name=f"{sft}-dpo", runs_dir=runs, overwrite=True, method="dpo", from_run=sft,
        steps=max(2, a.steps // 2), batch_size=a.batch_size, quant=a.quant).train())
    steps["train_dpo"]["status"] = getattr(trained, "status", None)
    if trained is not None:
        steps["train_dpo"]["run"] = training_record(RunStore.at(runs).get(f"{sft}-dpo"))
    report = timed(steps, "evaluate_dpo", lambda: api.evaluate(f"{sft}-dpo", runs_dir=runs, limit=a.eval_rows,
                                                                regenerate=True))
    if report is not None:
        steps["evaluate_dpo"]["text"] = str(report)[-3000:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--quant", default="4bit", choices=["4bit", "8bit", "none"])
    p.add_argument("--eval-rows", type=int, default=24)
    p.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    p.add_argument("--work", type=Path, default=Path("/tmp/ft-gpu-e2e"))
    p.add_argument("--out", type=Path, help="default: bench/results/gpu-e2e-<gpu>.json (not written by --smoke)")
    p.add_argument("--smoke", action="store_true", help="CPU: 2 steps, no 4-bit, 3 eval rows")
    p.add_argument("--llama-1b", action="store_true", help="a random 1B Llama through the API, each step measured")
    a = p.parse_args()
    if a.smoke:
        a.steps, a.batch_size, a.lr, a.quant, a.eval_rows = 2, 4, 1e-3, "none", 3
    a.work.mkdir(parents=True, exist_ok=True)
    gpu = gpu_name()
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    if a.llama_1b:
        result = {"gpu": gpu, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **llama_1b(a)}
        report(result, None if a.smoke else a.out or ROOT / "bench" / "results" / f"gpu-e2e-llama1b-{slug}.json")
        return 1 if result["failed"] else 0
    notebook, seconds, failed = execute(a)
    try:
        run = RunStore.at(a.work / "ft_runs").get(RUN)
    except FileNotFoundError:  # the notebook failed before training began
        run = None
    result = {
        "gpu": gpu, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"model": "smollm2-135m", "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr,
                     "quant": a.quant, "eval_rows": a.eval_rows},
        "notebook_seconds": round(seconds, 1), "failed": failed,
        "training": training_record(run) if run else None,
        "evaluation": evaluation_record(run) if run else None,
        "export": [{"kind": r.get("kind"), "quant": r.get("quant"), "files": [f["path"] for f in r.get("files", [])]}
                   for r in run.exports()] if run else [],
        "cells": cell_texts(notebook),
        "executed_notebook": str(a.work / EXECUTED),
    }
    report(result, None if a.smoke else a.out or ROOT / "bench" / "results" / f"gpu-e2e-{slug}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
