"""Wall time of training through jupyter-finetune (dashboard on) vs a plain TRL script, same steps.

Both run in this process, on the packaged SmolLM2 and the example tickets, with the same
settings (fp32 on CPU: TRL's default bf16 autocast is ~10x slower on CPUs without bf16 units); each is timed from loading the model to the saved adapter. Target: ratio <= 1.05.

    python bench/bench_overhead.py [--steps 6] [--out bench/results/overhead-<machine>.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import jupyter_finetune as ft
from results_io import report

from jupyter_finetune import api
from jupyter_finetune.models import resolve_model
from jupyter_finetune.ui.dashboard import Dashboard

DATA = Path(__file__).parents[1] / "examples" / "data" / "tickets.jsonl"


def plain_trl(data, steps: int, out: Path) -> float:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    start = time.perf_counter()
    path = resolve_model("smollm2-135m").path
    set_seed(0)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        args=SFTConfig(output_dir=str(out / "plain"), max_steps=steps, per_device_train_batch_size=8,
                       learning_rate=3e-4, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                       max_length=1024, disable_tqdm=True, bf16=False),  # as ours on CPU: fp32
        train_dataset=data.to_hf("train"), processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                               task_type="CAUSAL_LM"),
    )
    trainer.train()
    trainer.save_model(str(out / "plain-adapter"))
    return time.perf_counter() - start


def ours(data, steps: int, out: Path) -> float:
    start = time.perf_counter()
    job = api.prepare_training(data, name="bench", overwrite=True, runs_dir=out / "runs", steps=steps,
                               batch_size=8, lr=3e-4, save_steps=10_000)
    job.listeners.append(Dashboard(job.run.name, on_stop=job.stop, widgets=True))
    with contextlib.redirect_stdout(io.StringIO()):  # outside a kernel, display() prints reprs
        job.start().wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = ft.load_data("tickets", DATA, save=False)
    with tempfile.TemporaryDirectory() as tmp:
        plain_trl(data, 1, Path(tmp))  # warm-up: imports, first-touch allocations
        plain_s = plain_trl(data, args.steps, Path(tmp))
        ours_s = ours(data, args.steps, Path(tmp))
    result = {"steps": args.steps, "plain_trl_s": round(plain_s, 2), "ours_with_dashboard_s": round(ours_s, 2),
              "ratio": round(ours_s / plain_s, 3), "target": "<= 1.05",
              "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU"}
    report(result, args.out)


if __name__ == "__main__":
    main()
