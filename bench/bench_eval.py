"""Generation tokens/s of batched evaluation vs one row at a time, on SmolLM2, in one run.

Batched is our ``generate_timed`` (batch 8, the shared prompt start prefilled once, left padding);
one at a time is the loop a user would write: ``model.generate`` on each chat-templated prompt.
Both decode greedily on the same held-out prompts of the example tickets. Tokens count each
answer up to its end-of-turn token, so the padding a batch carries after a short answer is not
counted in its favour. Rounds alternate the order. Target: at least 3x with batch 8 on 2 cores.

    python bench/bench_eval.py [--rows 24] [--max-new-tokens 48] [--rounds 2] [--out bench/results/eval-<machine>.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jupyter_finetune as ft
from results_io import report

from jupyter_finetune.evaluation.generate import Generation, generate_timed
from jupyter_finetune.models import resolve_model

DATA = Path(__file__).parents[1] / "examples" / "data" / "tickets.jsonl"


def one_at_a_time(model, tokenizer, prompts, max_new_tokens: int) -> Generation:
    import torch

    answers, new_tokens, start = [], [], time.perf_counter()
    for conversation in prompts:
        ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        length = next((i + 1 for i, t in enumerate(new) if t == tokenizer.eos_token_id), len(new))
        answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
        new_tokens.append(length)
    return Generation(answers, [], new_tokens, time.perf_counter() - start)


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = ft.load_data("tickets", DATA)
    prompts = [ex.messages[:-1] for ex in data.test[:args.rows]]
    path = resolve_model("smollm2-135m").path
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    sides = {"one_at_a_time": lambda: one_at_a_time(model, tokenizer, prompts, args.max_new_tokens),
             "batched": lambda: generate_timed(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                                               batch_size=args.batch_size)}
    generate_timed(model, tokenizer, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up
    runs: dict[str, list] = {name: [] for name in sides}
    for i in range(args.rounds):
        for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            runs[name].append(sides[name]())
    rate = {name: sum(sum(g.new_tokens) for g in gens) / sum(g.seconds for g in gens) for name, gens in runs.items()}
    same = sum(a == b for a, b in zip(runs["batched"][0].answers, runs["one_at_a_time"][0].answers))
    result = {"rows": len(prompts), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
              "rounds": args.rounds, "one_at_a_time_tokens_per_s": round(rate["one_at_a_time"], 1),
              "batched_tokens_per_s": round(rate["batched"], 1),
              "speedup": round(rate["batched"] / rate["one_at_a_time"], 2), "target": ">= 3",
              "answer_tokens": sum(runs["batched"][0].new_tokens),
              "same_answers": f"{same}/{len(prompts)} (batching changes float rounding, rarely the argmax)",
              "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU"}
    report(result, args.out)


if __name__ == "__main__":
    main()
