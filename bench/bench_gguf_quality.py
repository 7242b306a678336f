"""What quantizing the exported GGUF costs on the quickstart's task, measured in real llama.cpp.

Trains the quickstart run (SmolLM2-135M, tickets, 30 steps; reused when the run store already
holds it), exports it as GGUF at f16, q8_0 and q4_k_m, and answers the held-out tickets with each
file in llama-cpp-python (greedy, the prompt tokens exactly as evaluation builds them), next to the
fine-tuned model itself in transformers. Prints json_fields per system and the q4_k_m - f16 gap
(the issue's bound: at most 0.10).

    python bench/bench_gguf_quality.py [--runs DIR] [--out bench/results/gguf-quality-cpu2.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from results_io import report  # noqa: E402

import jupyter_finetune as ft  # noqa: E402
from jupyter_finetune.data import restore  # noqa: E402
from jupyter_finetune.evaluation.compare import held_out  # noqa: E402
from jupyter_finetune.evaluation.metrics import json_fields  # noqa: E402
from jupyter_finetune.models import load_tokenizer  # noqa: E402
from jupyter_finetune.runs import FINE_TUNED, RunStore  # noqa: E402

RUN = "tickets-v1"
QUANTS = ("f16", "q8_0", "q4_k_m")
BOUND = 0.10


def trained_run(runs: Path, steps: int) -> None:
    """The quickstart's training, unless the run store already holds it finished."""
    if any(run.name == RUN and run.status().get("status") == "completed" for run in RunStore.at(runs)):
        return
    data = ft.load_data("tickets", ROOT / "examples" / "data" / "tickets.jsonl", split=0.1)
    ft.train(data, name=RUN, steps=steps, batch_size=8, lr=1e-3, overwrite=True, runs_dir=runs)


def llama_cpp_answers(path: Path, prompts: list[list[int]], max_tokens: int) -> tuple[list[str], float]:
    """Greedy answers of the GGUF file in llama.cpp to each prompt's token ids, and the seconds they took."""
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=2048, n_threads=os.cpu_count(), verbose=False, logits_all=False)
    start = time.perf_counter()
    answers = []
    for ids in prompts:
        llm.reset()
        out = llm.create_completion(ids, max_tokens=max_tokens, temperature=0.0, top_k=1)
        answers.append(out["choices"][0]["text"].strip())
    return answers, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path.home() / ".cache" / "jupyter-finetune" / "bench-gguf-runs")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    trained_run(args.runs, args.steps)
    evaluation = ft.evaluate(RUN, against="none", metrics="json_fields", runs_dir=args.runs)
    run = RunStore.at(args.runs).get(RUN)
    tokenizer = load_tokenizer(run.settings().model)
    data = held_out(restore(run.manifest(), run.data_rows(), tokenizer), "test", None)
    prompts = [tokenizer(tokenizer.apply_chat_template(ex.messages[:-1], tokenize=False, add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"] for ex in data]
    references = [ex.messages[-1]["content"] for ex in data]
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references)
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU", "run": RUN,
                    "rows": len(data), "json_fields": {"fine-tuned (transformers)": evaluation.comparison.systems[
                        FINE_TUNED].mean("json_fields")}, "seconds": {}, "bytes": {}}
    for quant in QUANTS:
        start = time.perf_counter()
        exported = ft.export(RUN, "gguf", quant=quant, overwrite=True, runs_dir=args.runs)
        result["seconds"][f"export {quant}"] = round(time.perf_counter() - start, 1)
        result["bytes"][quant] = exported.path.stat().st_size
        answers, seconds = llama_cpp_answers(exported.path, prompts, longest + 16)
        result["seconds"][f"llama.cpp answers {quant}"] = round(seconds, 1)
        result["json_fields"][f"gguf {quant} (llama.cpp)"] = sum(
            json_fields(a, r) for a, r in zip(answers, references)) / len(data)
    gap = result["json_fields"]["gguf f16 (llama.cpp)"] - result["json_fields"]["gguf q4_k_m (llama.cpp)"]
    result["q4_k_m gap to f16"] = round(gap, 4)
    result["within bound"] = gap <= BOUND
    report(result, args.out)
    return 0 if gap <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
