"""A run store written with the library's own writers (RunStore, TrainConfig, FtDataset's manifest, the
evaluation report), as training and %ft_eval leave it: for the server and the browser tests."""

from __future__ import annotations

import json
from typing import Any

from jupyter_finetune.data.dataset import FtDataset
from jupyter_finetune.data.formats import Example
from jupyter_finetune.data.tokens import Lengths
from jupyter_finetune.engine.config import build_config
from jupyter_finetune.evaluation import report
from jupyter_finetune.evaluation.compare import Outputs, score_outputs
from jupyter_finetune.evaluation.generate import Generation
from jupyter_finetune.evaluation.metrics import resolve_metric
from jupyter_finetune.evaluation.verdict import Threshold, decide
from jupyter_finetune.runs import Run, RunSettings, RunStore


def tickets() -> FtDataset:
    """A small chat data set; only its manifest and version matter here, so no tokenizer."""
    rows = [Example(i, [{"role": "user", "content": f"Ticket {i}: printer broken"},
                        {"role": "assistant", "content": json.dumps({"team": "it", "case": i})}]) for i in range(5)]
    return FtDataset("tickets", "messages", rows[:4], rows[4:], Lengths([30, 32, 31, 35], [20, 21, 20, 24]),
                     Lengths([33], [22]), [], 0, "0.2", 1024, "smollm2-135m", renderer=None)


def start(store: RunStore, name: str, model: str, max_steps: int) -> Run:
    run = store.create(name)
    data = tickets()
    run.begin(RunSettings(build_config("quick", model=model, steps=max_steps).to_dict(), "quick", "hf on cpu", model),
              data.manifest(), data.jsonl())
    run.set_status("running", step=0, max_steps=max_steps)
    return run


def log(run: Run, step: int, max_steps: int, loss: float, eval_loss: float | None = None) -> None:
    """What the trainer callback records at a log step."""
    run.append_metrics({"step": step, "max_steps": max_steps, "loss": loss, "eval_loss": eval_loss, "lr": 2e-4})
    run.set_status("running", step=step, max_steps=max_steps)


def evaluate(run: Run, version: str) -> None:
    """Two systems' saved answers, scored and judged, then saved the way %ft_eval saves them."""
    answers = {"fine-tuned": ['{"team": "it", "case": 4}'], "base": ["it"]}
    outputs = Outputs({"shots": 0, "seed": 0, "max_new_tokens": 32}, [4], [[{"role": "user", "content": "Ticket 4"}]],
                      ['{"team": "it", "case": 4}'], [],
                      {k: Generation(v, [12], [9], 0.5) for k, v in answers.items()})
    comparison = score_outputs(outputs, dict([resolve_metric("json_fields")]), [{}])
    report.save(run, version, "adapter_model.safetensors:1:1", comparison,
                decide(comparison, Threshold.parse("0.9", "json_fields")), None)


def completed_and_training(store: RunStore, records: list[tuple[int, float | None, float | None]]) -> None:
    """tickets-v1 completed after 4 steps that logged ``records`` (step, loss, eval loss), and evaluated;
    tickets-v2 training at step 2 of 8 (its status names this process, which is alive)."""
    done = start(store, "tickets-v1", "smollm2-135m", 4)
    for step, loss, eval_loss in records:
        log(done, step, 4, loss, eval_loss)
    done.set_status("completed", step=4, max_steps=4)
    evaluate(done, tickets().version)
    training = start(store, "tickets-v2", "qwen2.5-0.5b", 8)
    log(training, 1, 8, 2.5)
    log(training, 2, 8, 2.25)


DAMAGES = {  # what a hand edit or a cut sync leaves: (file, its new text or changed keys, the reason a listing shows)
    "status is a list": ("status.json", "[1, 2]", "status.json: holds [1, 2], not an object"),
    "string step": ("status.json", {"step": "abc"}, 'status.json: step is "abc", not a whole number'),
    "string pid": ("status.json", {"pid": "12"}, 'status.json: pid is "12", not a whole number'),
    "string max_steps": ("status.json", {"max_steps": "8"}, 'status.json: max_steps is "8", not a whole number'),
    "string updated": ("status.json", {"updated": "today"}, 'status.json: updated is "today", not a number'),
    "unknown status": ("status.json", {"status": "weird"}, 'status.json: status is "weird", not one of queued'),
    "empty status": ("status.json", "", "status.json: empty"),
    "config is a list": ("config.json", "[]", "config.json: holds [], not an object"),
    "config epochs": ("config.json", '{"train": {"model": "m", "epochs": "two"}}',
                      'config.json: epochs is "two", not a number'),
    "data manifest": ("data.json", '{"name": "t"}', "data.json: version is missing"),
    "metrics line not an object": ("metrics.jsonl", '{"step": 1, "loss": 2.0}\n[1, 2]\n',
                                   "metrics.jsonl line 2: holds [1, 2], not an object"),
    "metrics string loss": ("metrics.jsonl", '{"step": 1, "loss": "2.0"}\n',
                            'metrics.jsonl line 1: loss is "2.0", not a number'),
    "metrics string step": ("metrics.jsonl", '{"step": "1", "loss": 2.0}\n',
                            'metrics.jsonl line 1: step is "1", not a whole number'),
    "metrics not JSON": ("metrics.jsonl", '{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3}\n',
                         "metrics.jsonl line 2: not JSON"),
}


def damage(run: Run, file: str, change: str | dict[str, Any]) -> None:
    """Edit one file of the run as ``DAMAGES`` says: its new text, or keys of its JSON changed."""
    path = run.path / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}) if isinstance(change, dict) else change)
