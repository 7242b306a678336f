"""A model without a chat template: training renders with ChatML, and so must evaluation, chat and export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import build_tokenizer
from helpers import good_rows
from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.evaluation.chat import ChatSession
from jupyter_finetune.export.source import RunSource
from jupyter_finetune.models import load_tokenizer
from jupyter_finetune.runs import RunStore


@pytest.fixture(scope="module")
def no_template_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny Llama with a tokenizer that has no chat template, as many base models ship."""
    folder = tmp_path_factory.mktemp("no-template")
    for file in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / file, folder / file)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    return folder


def _prompt_tokens(tokenizer, conversations: list[list[dict[str, str]]]) -> list[int]:
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def test_evaluation_chat_and_export_render_prompts_as_training_did(no_template_model, tmp_path):
    data = prepare(read_records(good_rows(40)), name="tickets", tokenizer=load_tokenizer(str(no_template_model)),
                   model=str(no_template_model))
    assert "no_chat_template" in {p.code for p in data.warnings}
    job = api.prepare_training(data, name="nt", runs_dir=tmp_path, steps=1, batch_size=4, rank=8, alpha=16)
    assert job.train().status == "completed"
    trained_with = job.build_trainer().processing_class
    prompts = [ex.messages[:-1] for ex in data.test[:2]]

    report = api.evaluate("nt", runs_dir=tmp_path, against="base", max_new_tokens=2, limit=2)
    assert report.comparison.outputs.prompts == prompts
    assert report.comparison.outputs.generations["fine-tuned"].prompt_tokens == _prompt_tokens(trained_with, prompts)
    run = RunStore.at(tmp_path).get("nt")
    for tokenizer in (ChatSession(run, max_new_tokens=2).loaded.tokenizer, RunSource.of(run).tokenizer()):
        assert _prompt_tokens(tokenizer, prompts) == _prompt_tokens(trained_with, prompts)
