"""Peak host RAM and wall time of merged and GGUF exports of a ~3B model, streamed vs today's in-memory merge.

Builds a random-initialised Llama 3.2 3B-shaped model (hidden 3072, 28 layers, intermediate 8192,
24 heads, 8 kv heads, vocab 128256, tied embeddings, llama3 rope) in bf16, in shards as the hub
ships them (at most 5 GB each, with an index), tensor by tensor so that building it needs little
RAM; it is cached under ~/.cache/jupyter-finetune/bench-3b-<key> for reruns. A rank-16 LoRA
adapter on every linear layer (random B, so the merge is not a no-op) sits in a finished run.
Each export runs in a fresh process; its peak RSS is the kernel's VmHWM for that process (mapped
file pages included). The export is deleted after measuring. ``old`` is the merge before
streaming (transformers fp32 model + PeftModel.merge_and_unload), stopped at --cap GB.
Target: every streamed export at most 2 GB.

    python bench/bench_export.py [--exports merged,gguf-f16,gguf-q4_k_m,old] [--cap 14] \
        [--out bench/results/export-<machine>.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package; the tests' finished-run builder

from results_io import report  # noqa: E402

SHAPE = dict(hidden_size=3072, num_hidden_layers=28, intermediate_size=8192, num_attention_heads=24,
             num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=131072,
             rms_norm_eps=1e-5, rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                 "original_max_position_embeddings": 8192})
RANK = 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_SHARD = 5 * 10**9
CACHE = Path.home() / ".cache" / "jupyter-finetune"

EXPORT = """
import sys
from pathlib import Path
from jupyter_finetune.export import export_run
from jupyter_finetune.runs import Run
kind, quant, out = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3])
export_run(Run(Path(sys.argv[4])), kind, quant=quant, out=out)
print(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
"""
OLD = """
import sys
from pathlib import Path
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
merged = PeftModel.from_pretrained(base, sys.argv[2]).merge_and_unload(safe_merge=True)
merged.to(torch.bfloat16).save_pretrained(sys.argv[3])
print(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
"""


def build_base(folder: Path) -> None:
    """The model's tensors in LlamaForCausalLM's order, written one at a time into <=5 GB shards."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from jupyter_finetune.export.checkpoint import INDEX, SafetensorsWriter
    from jupyter_finetune.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")  # 49152 tokens: the GGUF vocabulary is padded to 128256
    config = LlamaConfig(**SHAPE, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         dtype=torch.bfloat16)
    with torch.device("meta"):
        shapes = [(n, tuple(t.shape)) for n, t in LlamaForCausalLM(config).state_dict().items()
                  if n != "lm_head.weight"]
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = 2 * torch.Size(shape).numel()
        if size + nbytes > MAX_SHARD and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    weight_map = {}
    for i, tensors in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        with SafetensorsWriter(folder / file, [(n, "bfloat16", s) for n, s in tensors]) as out:
            for name, shape in tensors:
                out.write(name, _random_rows(name, shape, generator))
                weight_map[name] = file
    total = sum(2 * torch.Size(s).numel() for s in dict(shapes).values())
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _random_rows(name: str, shape: tuple[int, ...], generator):
    import torch

    if len(shape) == 1:  # norms near 1, as trained ones are
        yield (1 + 0.1 * torch.randn(shape, generator=generator)).to(torch.bfloat16)
        return
    step = max(1, 2**24 // shape[1])
    for first in range(0, shape[0], step):
        rows = min(step, shape[0] - first)
        yield (0.02 * torch.randn((rows, shape[1]), generator=generator)).to(torch.bfloat16)


def build_run(root: Path, base: Path):
    """A finished run on the base, with a rank-16 adapter on every linear layer as PEFT saves one."""
    import torch
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer

    from export_fixtures import finished_run

    config = AutoConfig.from_pretrained(base)
    run = finished_run(root / "ft_runs", "bench-3b", str(base))
    run.adapter_dir.mkdir(parents=True, exist_ok=True)
    LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS, task_type="CAUSAL_LM",
               base_model_name_or_path=str(base)).save_pretrained(run.adapter_dir)
    hidden, inter = config.hidden_size, config.intermediate_size
    kv = hidden // config.num_attention_heads * config.num_key_value_heads
    dims = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv), "o_proj": (hidden, hidden),
            "gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for module, (fan_in, fan_out) in dims.items():
            part = "mlp" if module.endswith(("gate_proj", "up_proj", "down_proj")) else "self_attn"
            key = f"base_model.model.model.layers.{layer}.{part}.{module}"
            tensors[f"{key}.lora_A.weight"] = torch.randn((RANK, fan_in), generator=generator) / fan_in**0.5
            tensors[f"{key}.lora_B.weight"] = 0.01 * torch.randn((fan_out, RANK), generator=generator)
    save_file(tensors, run.adapter_dir / "adapter_model.safetensors", metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(base).save_pretrained(run.adapter_dir)
    return run


def measured(args: list[str], cap_bytes: int, log: Path) -> dict:
    """Run a child process; its peak RSS (VmHWM, which the child prints last: it starts afresh at exec, where
    wait4's ru_maxrss keeps this parent's RSS) and wall time, or 'over N GB' when its RSS passed the cap and it
    was stopped there."""
    import psutil

    start = time.perf_counter()
    printed = log.with_suffix(".out")
    with open(printed, "w") as output, open(log, "w") as errors:
        child = subprocess.Popen(args, stdout=output, stderr=errors, env={**os.environ, "PYTHONPATH": str(ROOT)})
    watcher, stopped = psutil.Process(child.pid), False
    while child.poll() is None:
        try:
            if watcher.memory_info().rss > cap_bytes:
                child.kill()
                stopped = True
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    seconds = round(time.perf_counter() - start, 1)
    if stopped:
        return {"peak_rss_gb": f"over {cap_bytes / 1e9:.0f} (stopped there)", "seconds": f"over {seconds}"}
    if child.returncode != 0:
        raise RuntimeError(f"{args[3:5]} failed:\n{log.read_text()[-3000:]}")
    return {"peak_rss_gb": round(int(printed.read_text().split()[-1]) * 1024 / 1e9, 2), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", default="merged,gguf-f16,gguf-q4_k_m,old")
    parser.add_argument("--cap", type=float, default=14.0, help="GB of RSS at which the old merge is stopped")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    key = hashlib.sha256(json.dumps([SHAPE, MAX_SHARD, 1], sort_keys=True).encode()).hexdigest()[:8]
    base = CACHE / f"bench-3b-{key}"
    if not (base / "config.json").is_file():
        start = time.perf_counter()
        shutil.rmtree(base, ignore_errors=True)
        build_base(base)
        print(f"built {base} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    work = CACHE / f"bench-export-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    from jupyter_finetune.export import kquants

    run = build_run(work, base)
    result = {"machine": f"{platform.node()} ({os.cpu_count()} cores)", "model": {
        "shape": "Llama 3.2 3B", "parameters": _parameters(base), "dtype": "bfloat16",
        "shards": sorted(p.name for p in base.glob("*.safetensors")), "adapter": f"LoRA rank {RANK} on {TARGETS}"},
        "kquants": "stand-in: Q8_0 for every K-quant" if (kquants.__doc__ or "").startswith("STAND-IN") else "real",
        "exports": {}}
    cap = int(args.cap * 1e9)
    for name in args.exports.split(","):
        out = work / "out" / name
        if name == "old":
            command = [sys.executable, "-c", OLD, str(base), str(run.adapter_dir), str(out)]
        else:
            kind, _, quant = name.partition("-")
            command = [sys.executable, "-c", EXPORT, kind, quant, str(out), str(run.path)]
        print(f"exporting {name} ...", file=sys.stderr)
        result["exports"][name] = measured(command, cap, work / f"{name}.log")
        print(f"  {result['exports'][name]}", file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    report(result, args.out)


def _parameters(base: Path) -> int:
    index = json.loads((base / "model.safetensors.index.json").read_text())
    return index["metadata"]["total_size"] // 2


if __name__ == "__main__":
    main()
