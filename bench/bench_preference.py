"""The preference example end to end: SFT on the chosen answers, DPO from it, and the held-out preference
accuracy of the base, the SFT run and the DPO run, with each stage's wall time.

The recipe is examples/preference.ipynb's, through the api: ``load_data`` of
examples/data/ticket_preferences.jsonl, ``prepare_training(...).train()`` with ``method="sft"``, then with
``method="dpo", from_run=<the SFT run>``. Accuracy is evaluation.preference.preference_score on the data's
test split, each model loaded as base + adapter with peft (fp32): a pair is ranked right when the chosen
answer's mean log-probability per token is above the rejected one's. The test pairs are also split by
the kind of rejected answer (verbose or wrong), and scored by "the shorter answer wins" to show that
length alone does not reach the bar. Target: DPO's accuracy above SFT's and at least 0.9.

    python bench/bench_preference.py [--split 0.2] [--sft KEY=VALUE,...] [--dpo KEY=VALUE,...] [--orpo]
                                     [--label defaults] [--runs DIR] [--out bench/results/preference-cpu2.json]

``--orpo`` trains one ORPO stage from the base instead (ORPO is SFT and preference in one pass) and
scores it against the base.

``--sft``/``--dpo`` set TrainConfig fields by hand (``lr=1e-4,epochs=2``); without them each stage runs on the
defaults (a preset plus engine.config.METHOD_DEFAULTS). Every call adds its entry, keyed by ``--label``,
to the results already in ``--out``, so the file keeps every configuration tried.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from results_io import report  # noqa: E402

from jupyter_finetune import api  # noqa: E402

DATA = ROOT / "examples" / "data" / "ticket_preferences.jsonl"
TARGET = 0.9


def settings(text: str) -> dict[str, Any]:
    """``lr=1e-4,epochs=2,beta=0.2`` -> typed TrainConfig overrides (numbers as numbers)."""
    found: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            found[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            found[key.strip()] = value.strip()
    return found


def kind(example: Any) -> str:
    """``wrong`` when the rejected answer is JSON (a wrong team or priority), else ``verbose``."""
    try:
        json.loads(example.rejected)
        return "wrong"
    except ValueError:
        return "verbose"


def accuracy(model_path: Path, adapter: Path | None, pairs: list[Any]) -> dict[str, Any]:
    """Preference accuracy of the base (``adapter`` None) or base + adapter, by kind of rejected answer and
    over all pairs (the mean of the two, weighted by their pairs)."""
    import torch
    from transformers import AutoModelForCausalLM

    from jupyter_finetune.evaluation.preference import preference_score
    from jupyter_finetune.models.tokenizer import training_tokenizer

    start = time.perf_counter()
    tokenizer = training_tokenizer(model_path, adapter)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    scores = {k: preference_score(model, tokenizer, [p for p in pairs if kind(p) == k]) for k in ("verbose", "wrong")}
    overall = {name: sum(getattr(s, name) * s.pairs for s in scores.values()) / len(pairs)
               for name in ("accuracy", "chosen_logp", "rejected_logp")}
    return {**{k: round(v, 4) for k, v in overall.items()},
            "by_rejected": {k: round(s.accuracy, 4) for k, s in scores.items()},
            "score_s": round(time.perf_counter() - start, 1)}


def shorter_wins(data: Any, pairs: list[Any]) -> dict[str, Any]:
    """How far "prefer the answer with fewer tokens" gets (a tie counts half), and the mean lengths."""
    tokenizer = data.renderer.tokenizer
    chosen = [len(tokenizer(p.messages[-1]["content"], add_special_tokens=False)["input_ids"]) for p in pairs]
    rejected = [len(tokenizer(p.rejected, add_special_tokens=False)["input_ids"]) for p in pairs]
    wins = sum(1.0 if c < r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected))
    return {"accuracy": round(wins / len(pairs), 4), "chosen_tokens": round(sum(chosen) / len(pairs), 1),
            "rejected_tokens": round(sum(rejected) / len(pairs), 1)}


def stage(data: Any, name: str, runs: Path, given: dict[str, Any]) -> dict[str, Any]:
    """Train one stage quietly; its settings as saved (defaults filled in), steps, status and wall time."""
    job = api.prepare_training(data, name=name, runs_dir=runs, overwrite=True, **given)
    start = time.perf_counter()
    result = job.train()
    seconds = time.perf_counter() - start
    saved = job.run.settings()
    kept = {k: saved.train[k] for k in ("method", "lr", "beta", "loss", "epochs", "steps", "batch_size", "rank",
                                        "alpha", "validation", "early_stopping", "from_run")}
    records = job.run.metrics()
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    return {"name": name, "given": given or "defaults", "settings": kept, "length": saved.length,
            "steps": result.step, "status": result.status, "message": result.message, "train_s": round(seconds, 1),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "eval_losses": [round(e, 4) for e in evals], "adapter": str(job.run.adapter_dir),
            "model_path": saved.model_path}


def reused(runs: Path, name: str) -> dict[str, Any]:
    """An SFT run trained by an earlier call, described as ``stage`` does, marked as reused (timed in that call)."""
    from jupyter_finetune.runs import RunStore

    run = RunStore.at(runs).get(name)
    saved = run.settings()
    return {"name": name, "reused": True, "settings": {k: saved.train[k] for k in ("method", "lr", "epochs", "steps")},
            "length": saved.length, "status": run.status().get("status"), "adapter": str(run.adapter_dir),
            "model_path": saved.model_path}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=float, default=0.2, help="Test fraction of the pairs (the notebook's).")
    parser.add_argument("--sft", default="", help="SFT settings by hand, e.g. lr=1e-4,epochs=2 (default: none).")
    parser.add_argument("--dpo", default="", help="DPO settings by hand, e.g. lr=2e-4,beta=0.1 (default: none).")
    parser.add_argument("--sft-run", default="", help="Start DPO from this SFT run already in --runs (not trained "
                        "again): for trying DPO settings on one SFT run.")
    parser.add_argument("--orpo", action="store_true", help="One ORPO stage from the base instead (SFT and "
                        "preference in one pass; --dpo sets its settings), scored against the base.")
    parser.add_argument("--label", default="defaults")
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "preference-cpu2.json")
    args = parser.parse_args()
    import torch

    runs = args.runs or Path(tempfile.mkdtemp(prefix="bench-preference-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    began = time.perf_counter()
    data = api.load_data("prefs", DATA, split=args.split)
    pairs = data.test
    if args.orpo:
        stages = {"orpo": stage(data, f"{args.label}-orpo", runs, {"method": "orpo", **settings(args.dpo)})}
    else:
        sft = reused(runs, args.sft_run) if args.sft_run else \
            stage(data, f"{args.label}-sft", runs, {"method": "sft", **settings(args.sft)})
        stages = {"sft": sft, "dpo": stage(data, f"{args.label}-dpo", runs,
                                           {"method": "dpo", "from_run": sft["name"], **settings(args.dpo)})}
    model_path = Path(next(iter(stages.values()))["model_path"])
    scores = {"base": accuracy(model_path, None, pairs),
              **{k: accuracy(model_path, Path(s["adapter"]), pairs) for k, s in stages.items()}}
    before, tuned = list(scores)[-2:]  # sft and dpo, or base and orpo
    entry = {"label": args.label, "when": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before,
             "load_after": [round(x, 2) for x in os.getloadavg()], "train_pairs": len(data.train),
             "test_pairs": len(pairs), "test_by_rejected": {k: sum(kind(p) == k for p in pairs) for k in ("verbose", "wrong")},
             "shorter_wins": shorter_wins(data, pairs), "accuracy": {k: v["accuracy"] for k, v in scores.items()},
             "scores": scores, **stages,
             "passed": scores[tuned]["accuracy"] > scores[before]["accuracy"] and scores[tuned]["accuracy"] >= TARGET,
             "total_s": round(time.perf_counter() - began, 1)}
    result = json.loads(args.out.read_text()) if args.out.is_file() else {
        "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores, CPU", "torch": torch.__version__,
        "model": "smollm2-135m", "data": str(DATA.relative_to(ROOT)), "target": f"dpo > sft and dpo >= {TARGET}",
        "runs": []}
    result["runs"] = [r for r in result["runs"] if r["label"] != args.label] + [entry]
    report(result, args.out)


if __name__ == "__main__":
    main()
