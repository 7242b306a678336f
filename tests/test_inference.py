"""Evaluation and chat load the run's model through its own backend, keep it loaded between them, size
their batches from free memory and survive running out of it; on a real tiny run."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.engine.backends import LoadDescription, select_inference_backend
from jupyter_finetune.engine.config import TrainConfig
from jupyter_finetune.evaluation.generate import GenerationOutOfMemory, generate_timed
from jupyter_finetune.evaluation.loading import MODELS, load_run
from jupyter_finetune.models.memory import ModelShape, generation_batch_size, generation_row_bytes
from jupyter_finetune.runs import RunStore
from jupyter_finetune.ui.eval_view import comparison_html
from helpers import good_rows

CPU_HF = LoadDescription("cpu", "float32", "none", "hf")


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    data = prepare(read_records(good_rows(40)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    runs = tmp_path_factory.mktemp("runs")
    job = api.prepare_training(data, name="t1", runs_dir=runs, steps=2, batch_size=4, lr=1e-3, rank=8, alpha=16)
    assert job.train().status == "completed"
    return runs


def copy_run(runs, name: str, **train) -> None:
    """Another run of the store: t1's folder under ``name``, its recorded training settings changed."""
    shutil.copytree(runs / "t1", runs / name)
    config = json.loads((runs / name / "config.json").read_text())
    config["train"].update(train)
    if train.get("quant", "none") != "none":
        config["backend"] = "hf: CUDA GPU, 4-bit base weights (QLoRA)"
    (runs / name / "config.json").write_text(json.dumps(config))


def test_an_hf_run_on_cpu_is_evaluated_in_fp32_and_the_evaluation_says_so(runs):
    MODELS.release()
    report = api.evaluate("t1", runs_dir=runs, max_new_tokens=4, limit=2, against="base", regenerate=True)
    assert report.loaded == CPU_HF
    assert "loaded: cpu/float32/none (hf)" in report.text()
    assert "loaded: cpu/float32/none (hf)" in comparison_html(report)
    saved = json.loads(report.path.read_text())
    assert LoadDescription.from_dict(saved["outputs"]["loaded"]) == CPU_HF
    reused = api.evaluate("t1", runs_dir=runs, max_new_tokens=4, limit=2, against="base")
    assert reused.generated == () and reused.loaded == CPU_HF  # what generated the saved answers


def test_evaluate_then_chat_of_the_same_run_load_the_model_once(runs):
    MODELS.release()
    before = MODELS.loads
    api.evaluate("t1", runs_dir=runs, max_new_tokens=4, limit=2, against="base", regenerate=True)
    model = MODELS.current.model
    api.evaluate("t1", runs_dir=runs, max_new_tokens=5, limit=2, against="base")  # new settings: generates again
    session = api.chat_session("t1", runs_dir=runs, max_new_tokens=4)
    session.ask("hello")
    assert MODELS.loads == before + 1 and session.loaded.model is model


def test_another_run_or_training_frees_the_loaded_model(runs, tiny_model_dir, tiny_tokenizer):
    copy_run(runs, "t1-copy")
    first = weakref.ref(load_run(RunStore.at(runs).get("t1")).model)
    other = load_run(RunStore.at(runs).get("t1-copy"))
    gc.collect()
    assert first() is None and MODELS.current is other
    second = weakref.ref(other.model)
    del other
    data = prepare(read_records(good_rows(20)), name="more", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    api.prepare_training(data, name="t3", runs_dir=runs, steps=1)
    gc.collect()
    assert MODELS.current is None and second() is None


def test_a_4bit_run_on_a_kernel_without_cuda_loads_fp32_with_a_note(runs):
    copy_run(runs, "q4", quant="4bit")
    loaded = load_run(RunStore.at(runs).get("q4"))
    assert (loaded.description.device, loaded.description.dtype, loaded.description.quant) == ("cpu", "float32", "none")
    assert loaded.description.note.startswith("trained with --quant 4bit, but this kernel has no CUDA GPU")
    # a run trained with unsloth goes through training's own choice, which says why it is hf here
    backend, config, note = select_inference_backend(TrainConfig(model="m", quant="4bit"), "unsloth")
    assert backend.name == "hf" and config.quant == "none" and "trained with unsloth; hf: no CUDA GPU" in note


def test_batch_size_is_what_free_memory_holds():
    shape = ModelShape(hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8, head_dim=64, vocab=128256,
                       tied_embeddings=True, parameters=1_235_814_400, context=131072)
    # Llama-3.2-1B in bf16: keys and values of 8 KV heads x 64 in 16 layers, 32 KiB per token; 1 MiB of logits
    assert generation_row_bytes(shape, tokens=1, dtype_bytes=2) == 2 * 16 * 8 * 64 * 2 + 2 * 128256 * 4
    row = generation_row_bytes(shape, tokens=1024, dtype_bytes=2)  # 32 MiB + 1 MiB of logits
    assert generation_batch_size(shape, free_bytes=10 * row, tokens=1024, dtype_bytes=2, most=64) == 5
    assert generation_batch_size(shape, free_bytes=1000 * row, tokens=1024, dtype_bytes=2, most=64) == 64
    assert generation_batch_size(shape, free_bytes=row // 10, tokens=1024, dtype_bytes=2, most=64) == 1


def fail_batches_over(model, rows: int):
    """Make the real model run out of memory (the real exception class) on batches of more than ``rows``."""

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[0] > rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a batch of {ids.shape[0]}")

    return model.get_base_model().model.register_forward_pre_hook(hook, with_kwargs=True)


def test_out_of_memory_halves_the_batch_and_gives_the_same_answers(runs):
    loaded = load_run(RunStore.at(runs).get("t1"))
    head = loaded.model.get_output_embeddings()
    prompts = [[{"role": "user", "content": f"ticket {i}: the printer is on fire"}] for i in range(6)]
    expected = generate_timed(loaded.model, loaded.tokenizer, prompts, max_new_tokens=6, batch_size=8)
    handle = fail_batches_over(loaded.model, 2)
    try:
        halved = generate_timed(loaded.model, loaded.tokenizer, prompts, max_new_tokens=6, batch_size=8)
        assert halved.answers == expected.answers and halved.new_tokens == expected.new_tokens
        handle.remove()
        handle = fail_batches_over(loaded.model, 0)
        message = r"out of cpu memory .* after 0 of 6 answers: lower --max-new-tokens \(now 6\)"
        with pytest.raises(GenerationOutOfMemory, match=message):
            generate_timed(loaded.model, loaded.tokenizer, prompts, max_new_tokens=6, batch_size=8)
    finally:
        handle.remove()
    assert loaded.model.get_output_embeddings() is head  # the CPU logits module is put back, error or not


def test_answers_before_an_out_of_memory_error_are_kept_and_the_next_call_continues(runs):
    full = api.evaluate("t1", runs_dir=runs, max_new_tokens=4, limit=4, against="none", regenerate=True, batch_size=1)
    full.path.unlink()  # only answers kept by the stopped call below can be reused
    model = load_run(RunStore.at(runs).get("t1")).model
    prefills = []

    def run_out_after_two_rows(module, args, kwargs):
        if kwargs["input_ids"].shape[1] > 1:  # a prefill: the shared prompt start, then one per row
            prefills.append(1)
            if len(prefills) > 3:
                raise torch.OutOfMemoryError("CUDA out of memory.")

    handle = model.get_base_model().model.register_forward_pre_hook(run_out_after_two_rows, with_kwargs=True)
    try:
        with pytest.raises(GenerationOutOfMemory, match="after 2 of 4 answers: .* continues from the answers kept"):
            api.evaluate("t1", runs_dir=runs, max_new_tokens=4, limit=4, against="none", regenerate=True,
                         batch_size=1)
    finally:
        handle.remove()
    prefills.clear()
    handle = model.get_base_model().model.register_forward_pre_hook(run_out_after_two_rows, with_kwargs=True)
    try:
        resumed = api.evaluate("t1", runs_dir=runs, max_new_tokens=4, limit=4, against="none", batch_size=1)
    finally:
        handle.remove()
    assert len(prefills) == 3  # the shared start and the two missing rows only
    assert resumed.comparison.outputs.generations["fine-tuned"].answers == \
        full.comparison.outputs.generations["fine-tuned"].answers
    assert list((runs / "t1" / "eval" / "partial").glob("*.json")) == []  # the complete evaluation replaced it


CPU_OUT_OF_MEMORY = '''
import re, resource, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from conftest import build_tokenizer
from jupyter_finetune.evaluation.generate import generate_timed

tokenizer = build_tokenizer()
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
    num_attention_heads=8, vocab_size=len(tokenizer), max_position_embeddings=2048,
    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
prompts = [[{"role": "user", "content": f"{i} " + "the printer is on fire again " * 60}] for i in range(12)]
one_by_one = generate_timed(model, tokenizer, prompts, max_new_tokens=2, batch_size=1)
size = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 48 * 2**20, resource.RLIM_INFINITY))  # 48 MiB more than now
ids = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, return_tensors="pt", return_dict=True,
                                    padding=True)
try:
    model.generate(**ids, max_new_tokens=2, do_sample=False)
    print("12 rows at once fit under the limit")
except RuntimeError as e:
    print("12 rows at once:", str(e).splitlines()[0])
halved = generate_timed(model, tokenizer, prompts, max_new_tokens=2, batch_size=12)
print("same answers" if halved.answers == one_by_one.answers else "other answers")
'''


@pytest.mark.slow
def test_running_out_of_host_memory_halves_the_batch_on_cpu_too():
    """A real allocation failure: the process's address space is capped just above what it holds."""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": f"{tests.parent}{os.pathsep}{tests}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CPU_OUT_OF_MEMORY], capture_output=True, text=True, env=env,
                          timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.strip()]  # the tokenizer trainer prints blank lines
    assert len(lines) == 2 and "can't allocate memory" in lines[0], done.stdout + done.stderr[-2000:]
    assert lines[1] == "same answers"
