"""The model card (README.md) that travels with an exported adapter or merged model.

Everything comes from the run store, so a card written months later says what the run did:
base model, data version (content hash), every training setting, the losses, and the
evaluation results when the run was evaluated.
"""

from __future__ import annotations

import json
from typing import Any

from ..models import ALIASES
from ..runs.store import unless_missing
from .source import RunSource

_TOOL = "[jupyter-finetune](https://pypi.org/project/jupyter-finetune/)"


def model_card(source: RunSource, kind: str, notes: tuple[str, ...] = ()) -> str:
    """Markdown with a Hugging Face metadata header; ``kind`` is adapter or merged."""
    run = source.run
    spec = source.settings.model
    hub_id = ALIASES[spec].hub_id if source.base.kind == "alias" else spec if source.base.kind == "hub" else None
    what = "LoRA adapter" if kind == "adapter" else "LoRA fine-tune merged into the base weights"
    header = ["---", *([f"base_model: {hub_id}"] if hub_id else []),
              f"library_name: {'peft' if kind == 'adapter' else 'transformers'}",
              "tags:", "- jupyter-finetune", "- lora", *(["- merged"] if kind == "merged" else []), "---", ""]
    body = [f"# {run.name}", "", f"A {what} of `{spec}`, trained with {_TOOL}.", ""]
    body += [f"> {note}" for note in notes] + ([""] if notes else [])
    body += _base_section(source, hub_id) + _data_section(source) + _settings_section(source)
    body += _training_section(source) + _eval_section(source) + _usage_section(kind)
    return "\n".join(header + body).rstrip() + "\n"


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows), ""]


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _base_section(source: RunSource, hub_id: str | None) -> list[str]:
    spec = source.settings.model
    rows = [("model", f"`{spec}`"), ("weights trained on", f"`{source.base_path}`")]
    if hub_id:
        rows.insert(1, ("source", f"[{hub_id}](https://huggingface.co/{hub_id})"))
    return ["## Base model", "", *_table(rows)]


def _data_section(source: RunSource) -> list[str]:
    data = unless_missing(source.run.manifest)
    if data is None:
        return ["## Data", "", "Not recorded.", ""]
    rows = [("name", data.name), ("version (content hash)", f"`{data.version}`"), ("format", data.format),
            ("split", data.split), ("rows", f"{data.train_rows} train / {data.test_rows} test"),
            ("tokens per epoch", data.train_tokens)]
    return ["## Data", "", *_table(rows)]


def _settings_section(source: RunSource) -> list[str]:
    rows = [("preset", source.settings.preset), ("ran on", source.settings.backend),
            *sorted(source.settings.train.items())]
    return ["## Training settings", "", *_table(rows)]


def _training_section(source: RunSource) -> list[str]:
    status = source.run.status()
    losses = source.run.losses()
    last, best = losses.last_train_loss, losses.best_eval_loss
    rows = [("status", status.get("status", "?")), ("steps", status.get("step", "?")),
            ("last training loss", "none logged" if last is None else f"{last:.4f}"),
            ("best held-out loss", "none logged" if best is None else f"{best:.4f}")]
    return ["## Training", "", *_table(rows)]


def _eval_section(source: RunSource) -> list[str]:
    """One table per saved evaluation (one per data version): systems by metric, and the verdict."""
    out = ["## Evaluation", ""]
    for result in sorted(source.run.evaluations(), key=lambda e: e.data_version):
        if not result.systems:
            continue
        out += [f"On held-out data version `{result.data_version}`:", "",
                "| system | " + " | ".join(result.metrics) + " |", "|---|" + "---|" * len(result.metrics)]
        for name, system in result.systems.items():
            out.append(f"| {name} | " + " | ".join(_score(system.scores.get(m)) for m in result.metrics) + " |")
        out += [""] + ([f"Verdict: {result.verdict}", ""] if result.verdict else [])
    if len(out) == 2:
        out += [f"Not evaluated yet (`%ft_eval {source.run.name}` compares it with the base model).", ""]
    return out


def _score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _usage_section(kind: str) -> list[str]:
    if kind == "adapter":
        code = ["from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                'model = AutoPeftModelForCausalLM.from_pretrained("path/to/this/folder")',
                'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")']
    else:
        code = ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
                'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")']
    return ["## Use", "", "```python", *code, "```", ""]
