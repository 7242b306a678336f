"""The packaged SmolLM2 exported to GGUF answers the quickstart's held-out tickets exactly as base + adapter does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export_fixtures import finished_run, lora_adapter
from jupyter_finetune.data import prepare, read_path
from jupyter_finetune.export import export_run
from jupyter_finetune.models import resolve_model

EXAMPLE = Path(__file__).parents[1] / "examples" / "data" / "tickets.jsonl"
PROMPTS = 5
NEW_TOKENS = 24


def held_out_prompts(tokenizer) -> list[str]:
    """The first held-out tickets of the quickstart's split (%ft_data tickets --split 0.1), as generation prompts."""
    data = prepare(read_path(EXAMPLE), name="tickets", tokenizer=tokenizer, model="smollm2-135m", split=0.1, seed=0)
    return [tokenizer.apply_chat_template(ex.messages[:-1], tokenize=False, add_generation_prompt=True)
            for ex in data.test[:PROMPTS]]


def greedy(model, tokenizer, prompts: list[str]) -> list[str]:
    """Batched greedy answers. Not with the shared load_tokenizer one: padding stays switched on in it."""
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_f16_gguf_gives_the_same_greedy_answers_on_the_quickstarts_held_out_prompts(tmp_path):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(base)  # our own: generation leaves padding switched on in it
    run = finished_run(tmp_path / "ft_runs", "tickets-v1", "smollm2-135m")
    reference = lora_adapter(base, run.adapter_dir, tokenizer, scale=0.01)
    merged = reference.merge_and_unload()
    result = export_run(run, "gguf", quant="f16")

    model = AutoModelForCausalLM.from_pretrained(result.path.parent, gguf_file=result.path.name, dtype=torch.float32)
    gguf_tokenizer = AutoTokenizer.from_pretrained(result.path.parent, gguf_file=result.path.name)
    prompts = held_out_prompts(tokenizer)
    want = greedy(merged, tokenizer, prompts)
    assert greedy(model.eval(), gguf_tokenizer, prompts) == want
    assert len(set(want)) > 1 and all(len(a) > 10 for a in want)  # real, differing answers, not empty ones

    fields = GGUFReader(result.path).fields
    assert fields["tokenizer.ggml.pre"].contents() == "smollm"  # as in the GGUF SmolLM2 ships in
    assert fields["tokenizer.chat_template"].contents() == tokenizer.chat_template
