"""Wall time of training through jupyter-finetune (dashboard on) vs a plain TRL script, same steps.

Both run in this process, on the packaged SmolLM2 and the example tickets (``--method sft``, TRL's
SFTTrainer) or the example ticket preferences (``--method dpo``, TRL's DPOTrainer with the adapter
switched off as the reference), doing the same work:
the same seed, batches, LoRA and schedule, no gradient checkpointing, no evaluation during training
(``--validation 0``: validation is work the plain script does not do, bounded by its own 10% budget),
a checkpoint at the end, fp32 (TRL's default bf16 autocast
is ~10x slower on CPUs without bf16 units). Each side is timed from loading the model to the saved adapter.
After a one-step warm-up of each side, rounds alternate which side goes first, so drift in the
machine's speed (thermal, other processes) falls on both. Target: ratio <= 1.05.

    python bench/bench_overhead.py [--method sft|dpo] [--steps 6] [--rounds 3] [--out bench/results/overhead-<machine>.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jupyter_finetune as ft
from results_io import report

from jupyter_finetune import api
from jupyter_finetune.models import resolve_model
from jupyter_finetune.ui.dashboard import Dashboard

DATA = {"sft": Path(__file__).parents[1] / "examples" / "data" / "tickets.jsonl",
        "dpo": Path(__file__).parents[1] / "examples" / "data" / "ticket_preferences.jsonl"}
SEED, BATCH, LR, RANK, ALPHA, DROPOUT, WARMUP, MAX_LENGTH, SAVE_STEPS = 0, 8, 3e-4, 16, 32, 0.05, 0.05, 1024, 10_000
BETA = 0.1


def plain_trl(data, steps: int, out: Path, method: str) -> float:
    """What a user would write with TRL alone, with our settings spelled out."""
    import dataclasses

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    start = time.perf_counter()
    path = resolve_model("smollm2-135m").path
    set_seed(SEED)
    kind, trainer_class = (SFTConfig, SFTTrainer) if method == "sft" else (DPOConfig, DPOTrainer)
    names = {f.name for f in dataclasses.fields(kind)}
    extra = {} if method == "sft" else {"beta": BETA, "loss_type": "sigmoid"}
    if "max_prompt_length" in names:  # older TRL cuts DPO prompts at 512 unless told
        extra["max_prompt_length"] = None
    trainer = trainer_class(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        args=kind(output_dir=str(out / "plain"), max_steps=steps, per_device_train_batch_size=BATCH,
                  per_device_eval_batch_size=BATCH, learning_rate=LR, lr_scheduler_type="linear",
                  warmup_steps=WARMUP, seed=SEED, data_seed=SEED, logging_steps=1, report_to=[], use_cpu=True,
                  save_strategy="steps", save_steps=SAVE_STEPS, save_total_limit=2,
                  max_length=MAX_LENGTH, disable_tqdm=True, bf16=False, gradient_checkpointing=False, **extra),
        train_dataset=data.to_hf("train") if method == "sft" else data.to_hf_pairs("train"),
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules="all-linear",
                               task_type="CAUSAL_LM"),
    )
    trainer.train()
    trainer.save_model(str(out / "plain-adapter"))
    return time.perf_counter() - start


def ours(data, steps: int, out: Path, method: str) -> float:
    """``%ft_train`` as it runs in a notebook cell: run store, events, the widget dashboard, and the
    awaited fit that hands the kernel's event loop a turn at each step end."""
    start = time.perf_counter()
    job = api.prepare_training(data, name="bench", overwrite=True, runs_dir=out / "runs", steps=steps,
                               batch_size=BATCH, lr=LR, rank=RANK, alpha=ALPHA, dropout=DROPOUT, seed=SEED,
                               max_length=MAX_LENGTH, save_steps=SAVE_STEPS, validation=0.0, method=method,
                               beta=BETA)
    job.listeners.append(Dashboard(job.run.name, on_stop=job.stop, widgets=True))
    with contextlib.redirect_stdout(io.StringIO()):  # outside a kernel, display() prints reprs
        asyncio.run(job.train_async())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", choices=list(DATA), default="sft")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = ft.load_data("tickets", DATA[args.method])
    sides = {"plain_trl": plain_trl, "ours_with_dashboard": ours}
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for run in sides.values():  # warm-up: imports, first-touch allocations, kernels for these shapes
            run(data, 1, Path(tmp), args.method)
        for i in range(args.rounds):
            for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                times[name].append(sides[name](data, args.steps, Path(tmp), args.method))
    plain, ours_s = sum(times["plain_trl"]), sum(times["ours_with_dashboard"])
    result = {"method": args.method, "steps": args.steps, "rounds": args.rounds,
              "plain_trl_s": [round(t, 2) for t in times["plain_trl"]],
              "ours_with_dashboard_s": [round(t, 2) for t in times["ours_with_dashboard"]],
              "ratio": round(ours_s / plain, 3),
              "ratio_per_round": [round(o / p, 3) for o, p in zip(times["ours_with_dashboard"], times["plain_trl"])],
              "ratio_of_medians": round(statistics.median(times["ours_with_dashboard"])
                                        / statistics.median(times["plain_trl"]), 3),
              "target": "<= 1.05", "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU"}
    report(result, args.out)


if __name__ == "__main__":
    main()
