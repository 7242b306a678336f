"""Merged and GGUF exports streamed from the base's safetensors: shard by shard, a block of rows at a time.

The base is read by file offset and never loaded as a model, so these tests check what that
could get wrong: a sharded base comes out sharded the same way with its index; blocks of rows
give the same bytes as whole tensors; rsLoRA's scale and fan_in_fan_out layers merge as PEFT
merges them; adapter features the arithmetic does not cover are refused before anything is written.
"""

from __future__ import annotations

import json

import pytest
import torch

from export_fixtures import finished_run, lora_adapter, logits, max_diff, ticket, tiny_model
from jupyter_finetune.export import ExportError, export_run
from jupyter_finetune.export import checkpoint

TEXTS = ["Ticket 42: shipping was late and the box arrived damaged. Refund, please!"]


def texts(tokenizer) -> list[str]:
    return [tokenizer.apply_chat_template(ticket(7), tokenize=False), *TEXTS]


def sharded_model(folder, tokenizer):
    """A tiny llama saved in several safetensors shards with an index, as the hub ships large models."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model(folder, tokenizer))
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, max_shard_size="150KB")
    return folder


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("stream")
    base = sharded_model(root / "sharded-base", tiny_tokenizer)
    run = finished_run(root / "ft_runs", "sharded", str(base))
    return run, base, lora_adapter(base, run.adapter_dir, tiny_tokenizer)


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of 1000 values, so every matrix of the tiny model is merged and written in several blocks of rows."""
    monkeypatch.setattr(checkpoint, "CHUNK_VALUES", 1000)


def test_merged_export_of_a_sharded_base_is_written_shard_by_shard_with_an_index_and_equals_base_plus_adapter(
        sharded_run, tiny_tokenizer, small_blocks):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    run, base, reference = sharded_run
    result = export_run(run, "merged", overwrite=True)
    index = json.loads((result.path / "model.safetensors.index.json").read_text())
    base_index = json.loads((base / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert index["weight_map"] == base_index["weight_map"] and len(shards) >= 2
    assert not (result.path / "model.safetensors").exists()
    for shard in shards:
        with safe_open(result.path / shard, "pt") as f:
            assert set(f.keys()) == {k for k, v in index["weight_map"].items() if v == shard}
    merged = AutoModelForCausalLM.from_pretrained(result.path, dtype=torch.float32)
    want = logits(reference, tiny_tokenizer, texts(tiny_tokenizer))
    assert max_diff(logits(merged, tiny_tokenizer, texts(tiny_tokenizer)), want) < 1e-4
    with reference.disable_adapter():  # the adapter matters, so a merge that dropped it would fail above
        assert max_diff(logits(reference, tiny_tokenizer, texts(tiny_tokenizer)), want) > 0.1


def test_gguf_written_in_blocks_of_rows_holds_the_values_of_the_gguf_of_whole_tensors(sharded_run, monkeypatch):
    """Blocks split the embedding and every projection, llama's q/k permutation included (it needs whole heads).
    Equal up to f16 rounding: a block's B @ A may round its last bit differently from the whole product's."""
    import numpy as np
    from gguf import GGUFReader

    run = sharded_run[0]
    whole = GGUFReader(export_run(run, "gguf", quant="f16", out=run.path / "whole").path)
    monkeypatch.setattr(checkpoint, "CHUNK_VALUES", 1000)
    blocks = GGUFReader(export_run(run, "gguf", quant="f16", out=run.path / "blocks").path)
    assert [(t.name, t.tensor_type, list(t.shape)) for t in blocks.tensors] == \
        [(t.name, t.tensor_type, list(t.shape)) for t in whole.tensors]
    for got, want in zip(blocks.tensors, whole.tensors):
        np.testing.assert_allclose(np.asarray(got.data, np.float32), np.asarray(want.data, np.float32),
                                   rtol=2e-3, atol=1e-6, err_msg=got.name)


def test_q4_k_m_gguf_has_llama_quantizes_tensor_types_and_the_f16_files_values_within_q4_k_error(
        tmp_path, tiny_tokenizer, small_blocks):
    """Rows of 256 values, so the K-quants apply (the tiny model's 64 fall back to 32-blocks), written in blocks."""
    import numpy as np
    from gguf import GGUFReader, GGMLQuantizationType, LlamaFileType
    from gguf.quants import dequantize

    from jupyter_finetune.export import kquants

    base = tiny_model(tmp_path / "base", tiny_tokenizer, hidden_size=256, intermediate_size=512)
    run = finished_run(tmp_path / "ft_runs", "wide", str(base))
    lora_adapter(base, run.adapter_dir, tiny_tokenizer)
    f16 = {t.name: np.asarray(t.data, np.float32) for t in GGUFReader(export_run(run, "gguf").path).tensors}
    q4 = GGUFReader(export_run(run, "gguf", quant="q4_k_m").path)
    assert q4.fields["general.file_type"].contents() == LlamaFileType.MOSTLY_Q4_K_M
    types = set()
    for t in q4.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))
        assert t.tensor_type == kquants.tensor_type(t.name, shape, "q4_k_m", 2, tied_embeddings=True), t.name
        types.add(t.tensor_type)
        want = f16[t.name].reshape(shape)
        got = dequantize(np.asarray(t.data), t.tensor_type).reshape(shape)
        assert np.abs(got - want).max() <= 0.1 * np.abs(want).max(), t.name
    assert {GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K} <= types


@pytest.fixture(scope="module")
def gpt2_base(tmp_path_factory, tiny_tokenizer):
    """GPT-2 stores its projections as Conv1D, (in, out): the layout LoRA's fan_in_fan_out is for."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2") / "base"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=len(tiny_tokenizer), n_positions=256,
                               initializer_range=0.1, eos_token_id=tiny_tokenizer.eos_token_id,
                               bos_token_id=tiny_tokenizer.bos_token_id)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_rslora_adapter_on_fan_in_fan_out_layers_merges_as_peft_merges_it(gpt2_base, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    run = finished_run(tmp_path / "ft_runs", "gpt2-rslora", str(gpt2_base))
    reference = lora_adapter(gpt2_base, run.adapter_dir, tiny_tokenizer, r=4, target_modules=["c_attn", "c_proj",
                             "c_fc"], fan_in_fan_out=True, use_rslora=True)
    saved = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert saved["fan_in_fan_out"] is True and saved["use_rslora"] is True
    merged = AutoModelForCausalLM.from_pretrained(export_run(run, "merged").path, dtype=torch.float32)
    want = logits(reference, tiny_tokenizer, texts(tiny_tokenizer))
    assert max_diff(logits(merged, tiny_tokenizer, texts(tiny_tokenizer)), want) < 1e-4
    with reference.disable_adapter():
        assert max_diff(logits(reference, tiny_tokenizer, texts(tiny_tokenizer)), want) > 0.1


@pytest.mark.parametrize(("options", "message"), [
    ({"use_dora": True}, r"uses DoRA \(use_dora\), which merged, GGUF and Ollama exports do not merge"),
    ({"rank_pattern": {"q_proj": 4}}, r"uses per-module ranks \(rank_pattern\)"),
    ({"modules_to_save": ["lm_head"]}, r"uses fully trained modules \(modules_to_save\)"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, r"holds 'base_model.model.model.embed_tokens\.[a-z_.]+', "
                                                     r"which is not a LoRA A or B matrix of a linear layer"),
])
def test_adapter_features_the_merge_does_not_cover_are_refused_before_anything_is_written(
        tmp_path, tiny_tokenizer, options, message):
    base = tiny_model(tmp_path / "base", tiny_tokenizer)
    run = finished_run(tmp_path / "ft_runs", "fancy", str(base))
    lora_adapter(base, run.adapter_dir, tiny_tokenizer, **options)
    for kind in ("merged", "gguf"):
        with pytest.raises(ExportError, match=message + r".*Export --to adapter"):
            export_run(run, kind)
    assert not (run.path / "export").exists() or not any((run.path / "export").rglob("*.*"))


def test_adapter_of_another_model_is_refused_naming_the_tensor(tmp_path, tiny_tokenizer):
    base = tiny_model(tmp_path / "base", tiny_tokenizer)
    wider = tiny_model(tmp_path / "wider", tiny_tokenizer, hidden_size=128, intermediate_size=256)
    run = finished_run(tmp_path / "ft_runs", "mismatch", str(base))
    lora_adapter(wider, run.adapter_dir, tiny_tokenizer)
    with pytest.raises(ExportError, match=r"the adapter's update of 'model.layers.0.mlp.down_proj.weight' is "
                                          r"\[128, 256\] but the base model .* stores it as F32 \[64, 128\]"):
        export_run(run, "merged")


PEAK_RSS = """
import sys
from pathlib import Path
from jupyter_finetune.export import export_run
from jupyter_finetune.runs import Run
export_run(Run(Path(sys.argv[1])), "merged", out=Path(sys.argv[2]))
print(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
"""
"""The child's own peak RSS in kB: VmHWM starts afresh at exec, where ru_maxrss keeps the forking parent's."""


@pytest.mark.slow
def test_merged_export_peak_memory_does_not_grow_with_the_model(tmp_path, tiny_tokenizer):
    """A 4x bigger model (2 vs 8 layers of 64 MB in fp32) exports within the same peak RSS, give or take 50 MB
    (measured: 5 MB); loading it whole, as the merge did before streaming, adds 400 MB and more."""
    import subprocess
    import sys
    from pathlib import Path

    peaks = {}
    for layers in (2, 8):
        base = tiny_model(tmp_path / f"base-{layers}", tiny_tokenizer, hidden_size=1024, intermediate_size=4096,
                          num_attention_heads=8, num_key_value_heads=8, num_hidden_layers=layers)
        run = finished_run(tmp_path / "ft_runs", f"layers-{layers}", str(base))
        lora_adapter(base, run.adapter_dir, tiny_tokenizer)
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(run.path), str(tmp_path / f"out-{layers}")],
                              capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
        peaks[layers] = int(done.stdout.split()[-1]) * 1024
    sizes = {layers: sum(p.stat().st_size for p in (tmp_path / f"base-{layers}").glob("*.safetensors"))
             for layers in peaks}
    assert sizes[8] - sizes[2] > 380e6
    assert peaks[8] - peaks[2] < 50e6, peaks
