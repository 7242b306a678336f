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
from jupyter_finetune.models.speed import DDP_EFFICIENCY_NVLINK, DDP_EFFICIENCY_PCIE, FSDP_EFFICIENCY_PCIE, MFU

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


LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192)
"""Llama-3-8B's shape (untied lm_head)."""


def test_8b_model_needs_4bit_and_checkpointing_on_a_t4():
    shape = ModelShape.from_config(tiny_config(**LLAMA_8B))
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


def test_per_gpu_memory_for_8b_at_two_gpus_ddp_a_whole_copy_each_fsdp_sharded():
    """DDP: everything of one GPU plus buckets the size of the trainable gradients. FSDP: weights, adapters,
    gradients and optimizer states halved, plus the root unit (embeddings, lm_head, final norm) and two
    decoder blocks unsharded at once; activations and logits per GPU as on one."""
    shape = ModelShape.from_config(tiny_config(**LLAMA_8B))
    step = dict(batch_size=1, max_length=1024, rank=16, checkpointing=True)
    one = estimate_memory(shape, **step)
    ddp = estimate_memory(shape, **step, gpus=2)
    fsdp = estimate_memory(shape, **step, gpus=2, sharded=True)
    block = 218_103_808 + 2 * 4096  # q k v o gate up down, two norms
    root = 2 * 128256 * 4096 + 4096  # embeddings, lm_head, final norm
    assert (shape.layer_parameters, shape.root_parameters) == (block, root)
    lora = shape.lora_parameters(16) * 4
    assert ddp.buckets == one.gradients == lora and ddp.total == one.total + lora >= one.total
    assert (fsdp.weights, fsdp.lora, fsdp.gradients, fsdp.optimizer) == (
        one.weights // 2, one.lora // 2, one.gradients // 2, one.optimizer // 2)
    assert fsdp.gathered == root * 2 + 2 * (block * 2 + lora // 32)
    assert (fsdp.activations, fsdp.logits, fsdp.recomputed) == (one.activations, one.logits, one.recomputed)
    # 12.8 GiB per GPU fits a T4; 17.8 GiB on one does not
    assert fsdp.total < 0.75 * ddp.total and fsdp.total < 0.95 * 15 * GIB < one.total
    with pytest.raises(ValueError, match="8-bit cannot be sharded"):
        estimate_memory(shape, **step, quant="8bit", gpus=2, sharded=True)


LONG_JOB = Lengths([400] * 2000, [100] * 2000)  # 2,000 examples of 400 tokens: about half an hour for 8B on a T4


def plan_8b(gpu: str, lengths: Lengths | None = LONG_JOB, available: int = 1, **settings):
    table = gpu_table()
    config = build_config("balanced", max_length=512, epochs=1, **settings)
    return build_plan("llama-3-8b", ModelShape.from_config(tiny_config(**LLAMA_8B)), config, "lora", table.get(gpu),
                      table, lengths, fixed_length=True, fixed_quant="quant" in settings,
                      fixed_gpus="gpus" in settings, fixed_strategy="strategy" in settings, available=available)


@pytest.mark.parametrize("gpu, strategy, efficiency", [("T4", "ddp", DDP_EFFICIENCY_PCIE),
                                                       ("H100", "ddp", DDP_EFFICIENCY_NVLINK),
                                                       ("T4", "fsdp", FSDP_EFFICIENCY_PCIE)])
def test_two_gpus_halve_the_steps_and_take_one_gpus_time_over_two_times_the_efficiency(gpu, strategy, efficiency):
    plan = plan_8b(gpu, quant="4bit", gradient_checkpointing=True, batch_size=4, gpus=2, strategy=strategy)
    alone = plan_8b(gpu, quant="4bit", gradient_checkpointing=True, batch_size=4).schedule
    s = plan.schedule
    assert (alone.steps_per_epoch, s.steps_per_epoch) == (500, 250)  # 2,000 examples, 4 a step on each GPU
    assert s.one_gpu_seconds_per_epoch == alone.seconds_per_epoch
    assert s.seconds_per_epoch == pytest.approx(alone.seconds_per_epoch / (2 * efficiency))
    assert 0.5 < s.seconds_per_epoch / alone.seconds_per_epoch < 0.85
    assert s.gpu_usd == pytest.approx(2 * plan.gpu.usd_per_hour * s.seconds_per_epoch / 3600)
    assert f"time on 2 {gpu}s ({strategy.upper()}, {efficiency:.0%} scaling efficiency assumed)" in plan.text()


def test_kaggle_two_t4s_recommend_ddp_on_both_when_it_pays():
    """The kernel sees two T4s and no --gpus was given: 8B QLoRA takes about half an hour on one."""
    plan = plan_8b("T4", available=2)
    chosen = plan.recommendation.settings
    assert (chosen.gpus, chosen.strategy, chosen.quant, chosen.checkpointing) == (2, "ddp", "4bit", True)
    assert plan.recommendation.schedule.one_gpu_seconds > 20 * 60
    assert "2 T4s pay: an epoch takes " in plan.advice() and plan.advice().endswith("--gpus 2 --strategy ddp")
    assert "2 GPUs with DDP: " in plan._repr_html_() and "per GPU, fits a T4" in plan.advice()
    assert plan_8b("T4").recommendation.settings.gpus == 1  # one GPU to use: no advice about two
    assert "--gpus" not in plan_8b("T4").advice()


def test_a_tiny_job_stays_on_one_t4_even_when_two_are_there(shape):
    table = gpu_table()
    plan = build_plan("tiny", shape, build_config("balanced", max_length=256), "lora", table.get("T4"), table,
                      Lengths([100] * 60, [50] * 60), available=2)
    assert plan.recommendation.settings.gpus == 1
    assert "One T4 is enough: the training takes " in plan.advice() and "--gpus 2" not in plan.advice()


def test_fsdp_when_no_setting_fits_one_gpu_but_sharded_it_does():
    """8B in 16 bits (--quant none given) fits no T4 alone; split over two with FSDP it does, DDP it does not."""
    plan = plan_8b("T4", available=2, quant="none")
    chosen = plan.recommendation.settings
    assert (chosen.gpus, chosen.strategy, chosen.quant) == (2, "fsdp", "none") and plan.recommendation.sharded_to_fit
    assert "It fits no single T4 in any setting searched, but sharded over 2 with FSDP it does: train with " \
           "--gpus 2 --strategy fsdp (" in plan.advice()
    assert plan_8b("T4", quant="none").recommendation is None  # one T4, nothing fits: no FSDP to fall back on


def test_kernel_with_two_t4s_is_planned_for_both(tiny_model_dir, monkeypatch):
    """What the kernel sees (torch.cuda.device_count) is what the recommendation may use; --gpus all is all of it."""
    import torch

    from test_estimate import _kernel_gpu

    _kernel_gpu(monkeypatch, "Tesla T4", 15.6)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    from jupyter_finetune import api

    plan = api.plan(str(tiny_model_dir))
    assert (plan.gpu.name, plan.available, plan.settings.gpus) == ("T4", 2, 1)
    assert "Give --data to see whether training on 2 T4s pays" in plan.advice()
    assert api.plan(str(tiny_model_dir), gpus="all").settings.gpus == 2
    assert api.plan(str(tiny_model_dir), gpu="H100").available == 1  # not this kernel's GPU


def test_plan_magic_with_two_gpus_and_fsdp_shows_memory_per_gpu(shell, tiny_model_dir):
    with capture_output():
        shell.run_cell_magic("ft_data", f"tickets --model {tiny_model_dir} --max-length 256", jsonl(good_rows(60)))
    _, text, _ = run_cell(shell, "%ft_plan --data tickets --gpu T4 --gpus 2 --strategy fsdp --batch-size 4")
    assert "; per GPU of 2 with FSDP\n" in text and "Fits (total per GPU at most 95%" in text
    for row in ("FSDP gathered weights", "total with DDP instead", "time on 1 T4",
                f"time on 2 T4s (FSDP, {FSDP_EFFICIENCY_PCIE:.0%} scaling efficiency assumed)", "2 x T4 at $0.35/h"):
        assert f"\n{row} " in text
    assert "Recommended for T4: batch 4, max length 128, 16-bit, 2 GPUs with FSDP: " in text  # 128: the longest row
    assert "One T4 is enough" in text


def test_plan_magic_gpus_all_without_a_gpu_plans_one_and_says_so(shell, tiny_model_dir):
    _, text, _ = run_cell(shell, f"%ft_plan --model {tiny_model_dir} --gpus all")
    assert "This kernel sees no GPU, so --gpus all is planned as one." in text and "DDP" not in text
    with pytest.raises(UsageError, match="--gpus 'two': give a number of GPUs or all"):
        shell.run_line_magic("ft_plan", f"--model {tiny_model_dir} --gpus two")


def test_plan_magic_for_8b_on_two_t4s_with_fsdp_in_16_bit(shell, tiny_model_dir, tmp_path):
    """A real 8B config (no weights) through the magic: it fits two T4s only sharded."""
    import shutil

    folder = tmp_path / "llama-8b"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    tiny_config(**LLAMA_8B).save_pretrained(folder)
    _, text, _ = run_cell(shell, f"%ft_plan --model {folder} --gpu T4 --gpus 2 --strategy fsdp --quant none "
                                 "--max-length 1024")
    assert "8,030,261,248 parameters" in text and "per GPU of 2 with FSDP" in text
    assert "16-bit, gradient checkpointing, 2 GPUs with FSDP: " in text
    assert "It fits no single T4 in any setting searched, but sharded over 2 with FSDP it does" in text
