"""Validate and token-count 100,000 synthetic chat rows: ours vs the straightforward way.

Both run in this process on the same JSONL text and the packaged SmolLM2 tokenizer. The
straightforward way is json.loads per line, one batched apply_chat_template(tokenize=False)
and one batched tokenizer call, with no checks at all. Ours runs every check.

    python bench/bench_data.py [--rows 100000] [--out bench/results/data-<host>.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

from results_io import report

from jupyter_finetune.api import DEFAULT_MODEL
from jupyter_finetune.data import prepare, read_text
from jupyter_finetune.models import load_tokenizer

WORDS = ("the printer on floor three is broken again and invoices do not print please reset my password "
         "login fails since monday refund order late damaged box shipping billing account app crashes").split()
SYSTEMS = ["You triage support tickets. Answer with JSON: team, priority.",
           "You are a helpful assistant for the billing team."]


def synthetic_jsonl(rows: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = []
    for i in range(rows):
        user = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30)))
        answer = json.dumps({"team": rng.choice(["it", "billing", "shipping"]),
                             "priority": rng.choice(["low", "high"]), "ticket": i})
        lines.append(json.dumps({"messages": [{"role": "system", "content": rng.choice(SYSTEMS)},
                                              {"role": "user", "content": f"Ticket {i}: {user}"},
                                              {"role": "assistant", "content": answer}]}))
    return "\n".join(lines) + "\n"


def straightforward(text: str, tokenizer) -> list[int]:
    conversations = [json.loads(line)["messages"] for line in text.splitlines() if line.strip()]
    rendered = tokenizer.apply_chat_template(conversations, tokenize=False)
    return [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]


def ours(text: str, tokenizer):
    return prepare(read_text(text), name="bench", tokenizer=tokenizer, model=DEFAULT_MODEL, split=0.1,
                   context_length=8192)


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    text = synthetic_jsonl(args.rows)
    ours(synthetic_jsonl(2000, seed=1), tokenizer)  # warm-up: template compilation, caches
    base_s, ours_s = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine speed hits both alike
        t, counts = timed(straightforward, text, tokenizer)
        base_s.append(t)
        t, ds = timed(ours, text, tokenizer)
        ours_s.append(t)
    by_row = dict(zip(range(1, args.rows + 1), counts))
    ours_counts = {ex.row: n for ex, n in zip(ds.train + ds.test, ds.train_lengths.full + ds.test_lengths.full)}
    assert ours_counts == by_row, "token counts differ from the straightforward way"
    mean_tokens = sum(counts) / len(counts)
    base, mine = min(base_s), min(ours_s)
    result = {
        "rows": args.rows, "mean_tokens_per_row": round(mean_tokens, 1),
        "straightforward_s": round(base, 2), "ours_s": round(mine, 2),
        "straightforward_rows_per_s": round(args.rows / base), "ours_rows_per_s": round(args.rows / mine),
        "speedup": round(base / mine, 2), "target": ">= 1.5 (aim 2.0)",
        "machine": f"{platform.node()} {platform.machine()} {len(__import__('os').sched_getaffinity(0))} cores",
        "python": platform.python_version(),
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
