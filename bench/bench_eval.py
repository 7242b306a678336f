"""Generation tokens/s of batched evaluation vs one row at a time, on SmolLM2, in one run, per system.

Batched is our ``generate_timed`` (batch 8, the shared prompt start prefilled once, left padding);
one at a time is the loop a user would write: ``model.generate`` on each chat-templated prompt.
Both decode greedily on the same held-out prompts, as each system of %ft_eval asks them: the
example tickets zero-shot (base), with fixed shots (fewshot) and with retrieved shots (retrieval),
and the Brightwell questions with passages of its help pages (rag). Retrieved shots and passages
differ per row, so only the system prompt is shared: the systems where batching gains least.
Tokens count each answer up to its end-of-turn token, so the padding a batch carries after a short
answer is not counted in its favour. Rounds alternate the order. Target: at least 3x with batch 8
on 2 cores where the prompts share their start (base, fewshot: the measurement this bench has
always made). Where each row's prompt is mostly its own (retrieval, rag), reading the prompts is
compute-bound on a CPU and costs both sides the same, so the bench also times that part alone
(``batched_prefill_s``, one new token per row) and prints the most any batching could gain:
one-at-a-time time / prefill time.

    python bench/bench_eval.py [--rows 24] [--max-new-tokens 48] [--rounds 3] [--out bench/results/eval-<machine>.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jupyter_finetune as ft
from results_io import report

from jupyter_finetune.data.documents import read_documents
from jupyter_finetune.evaluation.generate import Generation, generate_timed
from jupyter_finetune.evaluation.systems import build_prompts
from jupyter_finetune.models import resolve_model

EXAMPLES = Path(__file__).parents[1] / "examples" / "data"


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


def system_prompts(rows: int) -> dict[str, list]:
    """Each system's prompts for the first ``rows`` held-out rows of its example."""
    tickets = ft.load_data("tickets", EXAMPLES / "tickets.jsonl")
    asked = build_prompts(tickets.test[:rows], tickets.train, ("base", "fewshot", "retrieval"), shots=3, seed=0,
                          docs=None, passages=0)
    shop = ft.load_data("brightwell", EXAMPLES / "brightwell_qa.jsonl", split=0.3)
    rag = build_prompts(shop.test[:rows], shop.train, ("rag",), shots=3, seed=0,
                        docs=read_documents(EXAMPLES / "brightwell"), passages=3)
    return {"base": asked.plain, "fewshot": asked.asked("fewshot"), "retrieval": asked.asked("retrieval"),
            "rag": rag.asked("rag")}


def measure(model, tokenizer, prompts, args) -> dict:
    sides = {"one_at_a_time": lambda: one_at_a_time(model, tokenizer, prompts, args.max_new_tokens),
             "batched": lambda: generate_timed(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                                               batch_size=args.batch_size)}
    runs: dict[str, list] = {name: [] for name in sides}
    for i in range(args.rounds):
        for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            runs[name].append(sides[name]())
    rate = {name: sum(sum(g.new_tokens) for g in gens) / sum(g.seconds for g in gens) for name, gens in runs.items()}
    same = sum(a == b for a, b in zip(runs["batched"][0].answers, runs["one_at_a_time"][0].answers))
    # Reading the prompts (one new token each) is work both sides do in full; it bounds what batching can gain.
    prefill = min(generate_timed(model, tokenizer, prompts, max_new_tokens=1, batch_size=args.batch_size).seconds
                  for _ in range(args.rounds))
    alone = sum(g.seconds for g in runs["one_at_a_time"]) / args.rounds
    return {"rows": len(prompts), "mean_prompt_tokens": round(sum(runs["batched"][0].prompt_tokens) / len(prompts)),
            "one_at_a_time_tokens_per_s": round(rate["one_at_a_time"], 1),
            "batched_tokens_per_s": round(rate["batched"], 1),
            "speedup": round(rate["batched"] / rate["one_at_a_time"], 2),
            "batched_prefill_s": round(prefill, 2), "one_at_a_time_s": round(alone, 2),
            "most_speedup_past_prefill": round(alone / prefill, 1),
            "answer_tokens": sum(runs["batched"][0].new_tokens), "same_answers": f"{same}/{len(prompts)}"}


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    prompts = system_prompts(args.rows)
    path = resolve_model("smollm2-135m").path
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    generate_timed(model, tokenizer, prompts["base"][:2], max_new_tokens=4, batch_size=2)  # warm-up
    systems = {name: measure(model, tokenizer, asked, args) for name, asked in prompts.items()}
    result = {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "rounds": args.rounds,
              "systems": systems, "lowest_speedup": min(s["speedup"] for s in systems.values()), "target": ">= 3",
              "same_answers": "batching changes float rounding, rarely the argmax",
              "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU"}
    report(result, args.out)


if __name__ == "__main__":
    main()
