"""Why foreground training runs on the calling thread: the same LoRA step on the main thread vs a
worker thread, in one process, with the main thread idle (as a kernel waiting on a cell).

On CPUs the worker is slower for two reasons this prints side by side: glibc gives a new thread its
own arena, which serves tensors over 64 MB (SmolLM2's logits at batch 8) from fresh mmaps, so every
step page-faults them in again (see the minor faults and system time); and libgomp throttles its
spinning once more threads are managed than there are cores, which the main thread's idle OpenMP
team makes true. Each step is SmolLM2 forward + backward + AdamW on one batch of 8 x 110 tokens.

    python bench/bench_train_thread.py [--steps 4] [--rounds 2] [--out bench/results/train-thread-<machine>.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import threading
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from results_io import report
from transformers import AutoModelForCausalLM

from jupyter_finetune.models import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m").path,
                                                                dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (8, 110), generator=torch.Generator().manual_seed(0))
    measured: dict[str, list[dict[str, float]]] = {"main_thread": [], "worker_thread": []}

    def steps(side: str) -> None:
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(args.steps):
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        after = resource.getrusage(resource.RUSAGE_SELF)
        measured[side].append({"s_per_step": (time.perf_counter() - start) / args.steps,
                               "minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / args.steps,
                               "system_s_per_step": (after.ru_stime - before.ru_stime) / args.steps})

    steps("main_thread")  # warm-up: first-touch allocations and kernels for these shapes
    measured["main_thread"].clear()
    for _ in range(args.rounds):
        steps("main_thread")
        worker = threading.Thread(target=steps, args=("worker_thread",))
        worker.start()
        worker.join()
    mean = {side: {k: round(sum(r[k] for r in rounds) / len(rounds), 3) for k in rounds[0]}
            for side, rounds in measured.items()}
    report({"steps": args.steps, "rounds": args.rounds, **mean,
            "worker_over_main": round(mean["worker_thread"]["s_per_step"] / mean["main_thread"]["s_per_step"], 3),
            "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU"}, args.out)


if __name__ == "__main__":
    main()
