"""%ft_plan: memory by component from the config alone, checked by hand and against a measured CPU step."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from helpers import good_rows, jsonl, run_cell
from jupyter_finetune.data.tokens import Lengths
from jupyter_finetune.engine import build_config
from jupyter_finetune.engine.plan import build_plan, candidate_lengths
from jupyter_finetune.models.gpus import GIB, UnknownGpu, gpu_table
from jupyter_finetune.models.memory import CPU_FP32, CUDA_OVERHEAD_BYTES, GPU_16BIT, ModelShape, estimate_memory
from jupyter_finetune.models.speed import MFU

# hidden 64, intermediate 128, 2 layers, 4 heads of 16, 2 KV heads, vocab 1000, untied lm_head
H, I, L, Q, KV, V, R = 64, 128, 2, 64, 32, 1000, 8
LINEARS = [(H, Q), (H, KV), (H, KV), (Q, H), (H, I), (H, I), (I, H)]  # q k v o gate up down
PARAMS = V * H + L * (sum(a * b for a, b in LINEARS) + 2 * H) + H + V * H  # embed, blocks + norms, final norm, lm_head


def tiny_config(**changes):
    from transformers import LlamaConfig

    values = dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=V, max_position_embeddings=512, tie_word_embeddings=False)
    return LlamaConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def shape() -> ModelShape:
    return ModelShape.from_config(tiny_config())


def test_shape_reads_the_config_and_counts_parameters_exactly(shape):
    assert (shape.hidden, shape.intermediate, shape.layers, shape.heads, shape.kv_heads, shape.head_dim,
            shape.vocab, shape.tied_embeddings, shape.context) == (H, I, L, 4, 2, 16, V, False, 512)
    assert shape.parameters == PARAMS == 202_048


def test_tied_embeddings_count_once():
    """transformers 5.0.0 builds the model on the meta device untied; the count must not see lm_head twice."""
    shape = ModelShape.from_config(tiny_config(tie_word_embeddings=True))
    assert shape.tied_embeddings and shape.parameters == PARAMS - V * H


def test_lora_parameters_are_rank_times_in_plus_out_for_every_linear(shape):
    assert shape.lora_parameters(R) == L * sum(R * (a + b) for a, b in LINEARS) == 16_384


def test_lora_breakdown_in_16_bit_matches_the_hand_count(shape):
    m = estimate_memory(shape, batch_size=2, max_length=32, rank=R, precision=GPU_16BIT)
    tokens, lora = 2 * 32, 16_384
    per_token_block = 4 * H + 4 * Q + 4 * KV + 4 * I + (5 * H + Q + I) + 7 * R
    assert per_token_block == 1720
    assert (m.weights, m.lora, m.gradients, m.optimizer) == (PARAMS * 2, lora * 4, lora * 4, lora * 8)
    assert m.activations == tokens * (L * per_token_block + 2 * H) * 2 == 456_704
    assert m.logits == tokens * V * 3 * 4 == 768_000
    assert (m.recomputed, m.overhead) == (0, CUDA_OVERHEAD_BYTES)
    assert m.total == PARAMS * 2 + lora * 16 + 456_704 + 768_000 + CUDA_OVERHEAD_BYTES


def test_checkpointing_keeps_block_inputs_and_recomputes_one_block(shape):
    m = estimate_memory(shape, batch_size=2, max_length=32, rank=R, checkpointing=True)
    assert m.activations == 64 * (L * H + 2 * H) * 2 == 32_768
    assert m.recomputed == 64 * 1720 * 2 == 220_160
    assert m.allocated == m.weights + m.lora + m.gradients + m.optimizer + m.activations + max(m.logits, m.recomputed)


def test_4bit_quantizes_only_the_blocks_linears(shape):
    m = estimate_memory(shape, batch_size=1, max_length=16, rank=R, quant="4bit")
    # NF4: half a byte per weight, one 8-bit constant per 64 weights, one fp32 per 256 constants
    per_layer = sum(n // 2 + n // 64 + 4 * -(-(n // 64) // 256) for n in (a * b for a, b in LINEARS))
    assert per_layer == 2116 + 1060 + 1060 + 2116 + 3 * 4228
    # the rest (embeddings, lm_head, norms) in fp32, as peft's prepare_model_for_kbit_training leaves it
    assert m.weights == (PARAMS - L * 36_864) * 4 + L * per_layer == 551_352


def test_full_fine_tuning_costs_16_bytes_per_parameter_and_refuses_4bit(shape):
    m = estimate_memory(shape, batch_size=1, max_length=16, rank=R, method="full")
    assert (m.weights, m.lora, m.gradients, m.optimizer) == (PARAMS * 4, 0, PARAMS * 4, PARAMS * 8)
    with pytest.raises(ValueError, match="cannot be quantized"):
        estimate_memory(shape, batch_size=1, max_length=16, rank=R, method="full", quant="4bit")


def test_fp32_cpu_mode_has_4_byte_weights_and_no_cuda_overhead(shape):
    m = estimate_memory(shape, batch_size=2, max_length=32, rank=R, precision=CPU_FP32)
    assert (m.weights, m.overhead, m.activations) == (PARAMS * 4, 0, 64 * (L * 1720 + 2 * H) * 4)


MEASURE = """
import json, sys, torch
from peft import LoraConfig, get_peft_model
from torch.profiler import ProfilerActivity, profile
from transformers import LlamaConfig, LlamaForCausalLM

config = LlamaConfig(**json.loads(sys.argv[1]))
batch, length, checkpointing = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.manual_seed(0)
model = LlamaForCausalLM(config)
if checkpointing:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.train()
weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ids = torch.randint(0, config.vocab_size, (batch, length))
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
prof.export_chrome_trace(sys.argv[5])
events = json.load(open(sys.argv[5]))["traceEvents"]
print(json.dumps({"weights": weights,
                  "peak": max(e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]")}))
"""
SMALL = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
             vocab_size=8000, max_position_embeddings=1024, tie_word_embeddings=True)
TOLERANCE = 0.15


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-checkpointing", "checkpointing"])
def test_cpu_estimate_is_within_15_percent_of_a_measured_lora_step(tmp_path, checkpointing):
    """One real LoRA forward + backward + AdamW step on a random 16M-parameter Llama in fp32, its
    allocations counted by torch's profiler from the step's start (so the weights, made before, are
    compared separately and exactly)."""
    import subprocess
    import sys

    batch, length = 4, 256
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(SMALL), str(batch), str(length),
                          str(int(checkpointing)), str(tmp_path / "trace.json")],
                         capture_output=True, text=True, check=True).stdout
    measured = json.loads(out.strip().splitlines()[-1])
    m = estimate_memory(ModelShape.from_config(tiny_config(**SMALL)), batch_size=batch, max_length=length, rank=8,
                        checkpointing=checkpointing, precision=CPU_FP32)
    assert m.weights == measured["weights"]
    step = m.allocated - m.weights
    assert abs(step - measured["peak"]) <= TOLERANCE * measured["peak"], (
        f"estimated {step / 2**20:.1f} MiB for the step, measured {measured['peak'] / 2**20:.1f} MiB")


def test_8b_model_needs_4bit_and_checkpointing_on_a_t4():
    shape = ModelShape.from_config(tiny_config(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                               num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                               max_position_embeddings=8192))
    table = gpu_table()
    plan = build_plan("llama-3-8b", shape, build_config("balanced", max_length=1024), "lora", table.get("T4"), table,
                      fixed_length=True)
    assert shape.parameters == 8_030_261_248
    assert plan.fit(table.get("T4")) == "does not fit" and plan.fit(table.get("A100-80")) == "fits with checkpointing"
    chosen = plan.recommendation.settings
    assert (chosen.quant, chosen.checkpointing, chosen.max_length) == ("4bit", True, 1024)
    assert plan.recommendation.total_bytes <= 0.95 * 15 * GIB
    assert plan.recommendation.text().startswith(f"batch {chosen.batch_size}, max length 1024, 4-bit, gradient "
                                                 "checkpointing: ")


def test_schedule_counts_steps_tokens_time_and_cost_by_hand(shape):
    table = gpu_table()
    t4 = table.get("T4")
    lengths = Lengths([100] * 9 + [300], [50] * 10)  # one row is cut at max length 256
    plan = build_plan("tiny", shape, build_config("balanced", batch_size=4, max_length=256, epochs=3), "lora", t4, table,
                      lengths)
    s = plan.schedule
    assert (s.examples, s.steps_per_epoch, s.tokens_per_epoch, s.epochs) == (10, 3, 9 * 100 + 256, 3.0)
    assert s.flops_per_token == 4 * PARAMS
    assert s.seconds_per_epoch == pytest.approx(1156 * 4 * PARAMS / (65e12 * MFU))
    assert s.gpu_usd == pytest.approx(s.seconds_per_epoch * 3 / 3600 * 0.35)
    assert s.openai_usd["gpt-4o-mini-2024-07-18"] == pytest.approx(1156 * 3 * 3.00 / 1e6)


def test_candidate_lengths_round_the_longest_example_up_and_stop_at_the_context():
    assert candidate_lengths(700, 8192) == (1024, 512, 256, 128)
    assert candidate_lengths(3000, 2048) == (2048, 1024, 512, 256, 128)
    assert candidate_lengths(20, None) == (128,)


def test_gpu_names_match_loosely_and_unknown_ones_list_the_known():
    table = gpu_table()
    assert table.get("a100_80").name == "A100-80" and table.get("rtx4090").name == "RTX4090"
    with pytest.raises(UnknownGpu, match="T4, L4, A10G"):
        table.get("V100")


def test_cuda_device_names_find_their_table_entry_by_name_and_memory():
    table = gpu_table()
    devices = {("Tesla T4", 15.6): "T4", ("NVIDIA L4", 22.0): "L4", ("NVIDIA L40S", 44.4): "L40S",
               ("NVIDIA A100-SXM4-40GB", 39.4): "A100-40", ("NVIDIA A100-SXM4-80GB", 79.2): "A100-80",
               ("NVIDIA H100 80GB HBM3", 79.2): "H100", ("NVIDIA GeForce RTX 4090", 23.6): "RTX4090",
               ("NVIDIA A10G", 22.1): "A10G"}
    assert {key: table.match(key[0], round(key[1] * GIB)).name for key in devices} == devices
    assert table.match("Tesla V100-SXM2-16GB", 16 * GIB) is None


def test_plan_magic_shows_the_breakdown_fits_and_a_recommendation(shell, tiny_model_dir):
    _, text, _ = run_cell(shell, f"%ft_plan --model {tiny_model_dir} --gpu T4 --batch-size 4 --max-length 256")
    for row in ("weights", "LoRA parameters", "gradients", "optimizer states", "activations", "logits",
                "CUDA overhead", "total (peak)"):
        assert f"\n{row} " in text
    for gpu in gpu_table().gpus:
        assert any(line.startswith(gpu + " ") and line.rstrip().endswith("fits") for line in text.splitlines())
    assert "Recommended for T4: batch 4, max length 256, 16-bit: " in text
    assert "Time and cost" not in text


def test_plan_magic_with_data_adds_time_and_cost(shell, tiny_model_dir):
    with capture_output():
        shell.run_cell_magic("ft_data", f"tickets --model {tiny_model_dir} --max-length 256", jsonl(good_rows(60)))
    _, text, _ = run_cell(shell, "%ft_plan --data tickets --gpu l4")
    kept = shell.user_ns["tickets"].validation_split(0.1, 64)  # what %ft_train trains on beside its validation rows
    assert f"{len(kept.train):,} training examples" in text
    assert f"tokens{' ' * 2}" in text and f"{kept.train_tokens:,}" in text
    assert "OpenAI gpt-4o-mini" in text and "Recommended for L4: batch 16" in text


def test_assigning_ft_plan_keeps_the_plan_and_shows_nothing(shell, tiny_model_dir):
    value, shown, published = run_cell(shell, f"plan = %ft_plan --model {tiny_model_dir} --gpu T4")
    plan = shell.user_ns["plan"]
    assert (value, shown, published) == (None, "", [])
    assert repr(plan) == plan.text() and plan.gpu.name == "T4"
    assert shell.display_formatter.format(plan)[0]["text/html"] == plan._repr_html_()


def test_plan_magic_rejects_an_unknown_gpu_listing_the_known_ones(shell, tiny_model_dir):
    with pytest.raises(UsageError, match=r"unknown GPU 'V100': use one of T4, L4, A10G, RTX4090"):
        shell.run_line_magic("ft_plan", f"--model {tiny_model_dir} --gpu V100")
    with pytest.raises(UsageError, match="not a data set in this notebook"):
        shell.run_line_magic("ft_plan", f"--model {tiny_model_dir} --data nothing")


def test_plan_renders_as_html(tiny_model_dir):
    from jupyter_finetune import api

    html = api.plan(str(tiny_model_dir), gpu="H100", batch_size=2)._repr_html_()
    assert html.count("<table") == 2 and "LoRA parameters" in html and "Recommended for H100: batch 2" in html
