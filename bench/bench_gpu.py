"""QLoRA training on one GPU: our API (unsloth backend) vs plain Unsloth + TRL vs plain transformers + peft +
bitsandbytes, on random-initialised Llama-shaped models built from real configs (nothing is downloaded).

Methods, each in its own process so that peak memory and Unsloth's import-time patches of transformers and
TRL cannot leak from one to another:
  a   ours: ``api.load_data`` + ``api.prepare_training(backend="unsloth", quant="4bit")`` + ``job.train()``
  a1  the same, with ``import unsloth`` before anything else, as Unsloth asks (optional: it tells whether
      our late import of unsloth, after transformers, costs speed)
  b   a plain Unsloth + TRL script (``import unsloth`` first, FastLanguageModel, SFTTrainer)
  c   a plain transformers + peft + bitsandbytes QLoRA script (SFTTrainer, prepare_model_for_kbit_training)
Same everywhere: the same JSONL file of chat rows each just under the max length (2048), LoRA r16 alpha16
dropout 0 on q,k,v,o,gate,up,down, NF4 double-quant base with bf16 compute, packing off, loss on the
answers only, gradient checkpointing (Unsloth's own mode for a and b), batch size, lr 2e-4, seed, TRL's
default optimizer. Unsloth decides padded or padding-free batches itself (it keeps padding-free on H100).

Timing: a TrainerCallback synchronises the GPU at each step end; the clock runs from the end of warm-up
step W to the end of step N. Tokens: a forward pre-hook on the decoder backbone adds up each training
batch's attention mask (or, for padding-free batches, which have none, its token count), so padding is
never counted and the count is taken the same way in all methods (TRL's own count is kept beside it as
a check). Peak memory: ``torch.cuda.max_memory_allocated()`` from the start of training (loading left
out). MFU = 6 x parameters x tokens/s / the GPU's dense bf16 peak from ``jupyter_finetune/models/gpus.json``:
the usual 6N per token, which for LoRA with gradient checkpointing is also about the work done (2N
forward, 2N recomputed forward, 2N input gradients, no weight gradients for frozen weights); attention's
FLOPs are left out. The planner's estimate is ``api.plan(...).chosen.allocated`` (checkpointing on), set
beside each measured peak.
Targets: (a)/(b) time per token <= 1.03; (a)/(c) tokens/s >= 1.5; (a)/(c) peak <= 0.7; planner within
15% of every measured peak. A missed target is printed as MISSED; the exit code is 0 all the same.
A method that fails (out of memory, say) is recorded with its error and the others go on. Results for
the same GPU and settings are merged into an existing ``--out`` file, so models and methods can be run
in separate commands (where one command may run 10 minutes: 1b; then 8b a,b; then 8b c, with the same
``--work`` and ``--keep`` so the 8B model is built once). The package need not be installed: the repo root
is put on the path.

    python bench/bench_gpu.py [--models 1b,8b] [--methods a,b,c] [--steps 30] [--warmup 5] [--batch-size 4]
                              [--work DIR] [--keep] [--timeout 1200] [--out bench/results/gpu-<gpu>.json]
    python bench/bench_gpu.py --smoke   # CPU: tiny model, (a) with the hf backend, (c) without bitsandbytes
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED, LR, RANK, ALPHA, DROPOUT, WARMUP_RATIO = 0, 2e-4, 16, 16, 0.0, 0.05
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LLAMA3 = {"vocab_size": 128256, "max_position_embeddings": 131072, "rope_theta": 500000.0}
MODELS: dict[str, dict[str, Any]] = {
    "1b": {**LLAMA3, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,  # Llama-3.2-1B
           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "8b": {**LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,  # Llama-3.1-8B
           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False},
    "tiny": {"vocab_size": 1024, "max_position_embeddings": 2048, "rope_theta": 500000.0, "hidden_size": 64,
             "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "tie_word_embeddings": True},
}
LABELS = {"a": "ours (API, unsloth backend)", "a1": "ours, import unsloth first", "b": "plain Unsloth + TRL",
          "c": "plain transformers+peft+bnb"}
SMOKE_LABELS = {"a": "ours (API, hf backend, CPU)", "c": "plain transformers+peft (CPU)"}
WORDS = ("the a printer floor three broken invoice print please reset password login billing account monday "
         "ticket shipping late box damaged refund customer order status delivery return discount email phone "
         "meeting moved tuesday laptop report weather sunny wind west flour egg salt milk bake minutes model "
         "trained epochs learning rate batch team sales answer short polite offer price water boils degrees "
         "quick brown fox jumps lazy dog cat sleeps warm kitchen table robot village sea harbour boats notebook "
         "blue city river capital france paris seven days week error file found path again support").split()
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "UNSLOTH_DISABLE_STATISTICS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
"""No machine this runs on can reach the hub: fail at once rather than wait for a connection."""


# ---------------------------------------------------------------------------------------------- children

def build_model(a: argparse.Namespace) -> None:
    """A random Llama of the named shape, written with its tokenizer: on the GPU in bf16, on CPU in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = build_tokenizer()
    cuda = torch.cuda.is_available()
    torch.manual_seed(SEED)
    config = LlamaConfig(**MODELS[a.model], bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(a.model_dir)
    tokenizer.save_pretrained(a.model_dir)
    (a.model_dir / "built.json").write_text(json.dumps(MODELS[a.model]))


def build_tokenizer() -> Any:
    """A byte-level BPE trained on the bench's words (ids far below any vocab here), with ChatML; no BOS,
    and a pad token that is not EOS, so neither Unsloth nor TRL changes anything."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from jupyter_finetune.models.tokenizer import CHATML_TEMPLATE

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    rng = random.Random(SEED)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(200)]
    backend.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="<|endoftext|>", model_max_length=131072)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def step_timer() -> Any:
    """A TrainerCallback that times each step end and counts the non-padding tokens each step trained on."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []
            self.tokens: Any = 0
            self.padded: bool | None = None
            self.losses: list[float] = []
            self.trl_tokens: dict[int, int] = {}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if torch.cuda.is_available():  # training's peak, as the planner estimates (Unsloth resets it too)
                torch.cuda.reset_peak_memory_stats()
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            base.model.register_forward_pre_hook(self._count, with_kwargs=True)  # the decoder backbone

        def _count(self, module, args, kwargs):
            if not module.training:
                return
            mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids", args[0] if args else None)
            self.padded = mask is not None
            self.tokens = self.tokens + (mask.sum() if mask is not None and mask.dim() == 2 else ids.numel())

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), int(self.tokens)))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(round(float(logs["loss"]), 4))
            if logs and "num_tokens" in logs:  # TRL's own running count of non-padding tokens
                self.trl_tokens[state.global_step] = int(logs["num_tokens"])

        def summary(self, warmup: int) -> dict[str, Any]:
            """Steps warmup+1..N: time, and tokens by the hook (TRL's count beside it as a check, and in
            its stead should the hook have seen nothing)."""
            steps = len(self.marks)
            (t0, n0), (t1, n1) = self.marks[warmup - 1], self.marks[-1]
            trl = self.trl_tokens[steps] - self.trl_tokens[warmup] if {steps, warmup} <= set(self.trl_tokens) else None
            tokens = n1 - n0 or trl
            if not tokens:
                raise RuntimeError(f"counted no tokens in {steps} steps (hook and TRL both silent)")
            return {"steps_timed": steps - warmup, "seconds": round(t1 - t0, 3), "tokens": tokens,
                    "tokens_trl": trl, "tokens_per_s": round(tokens / (t1 - t0), 1),
                    "batches": {None: "unknown", True: "padded", False: "padding-free"}[self.padded],
                    "step_seconds": [round(b[0] - a[0], 3) for a, b in zip(self.marks, self.marks[1:])],
                    "loss_first_last": [self.losses[0], self.losses[-1]] if self.losses else None}

    return StepTimer()


def train_ours(a: argparse.Namespace, timer: Any) -> None:
    import torch

    from jupyter_finetune import api

    gpu = torch.cuda.is_available()
    data = api.load_data("bench", a.data, split=0.0, model=str(a.model_dir), max_length=a.max_length)
    job = api.prepare_training(
        data, name=f"bench-{a.child}", overwrite=True, runs_dir=Path.cwd() / "runs", callbacks=[timer],
        backend="unsloth" if gpu else "hf", quant="4bit" if gpu else "none", gradient_checkpointing=True,
        rank=RANK, alpha=ALPHA, dropout=DROPOUT, target_modules=",".join(TARGETS), steps=a.steps,
        batch_size=a.batch_size, lr=LR, warmup_ratio=WARMUP_RATIO, seed=SEED, max_length=a.max_length,
        save_steps=10_000, validation=0.0)  # the plain scripts train on every row and generate nothing
    result = job.train()
    if result.status != "completed":
        raise RuntimeError(f"our job ended {result.status}: {result.message}")


def train_plain_unsloth(a: argparse.Namespace, timer: Any) -> None:
    """As Unsloth's notebooks write it (``import unsloth`` came first, in ``child``)."""
    from trl import SFTTrainer
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(a.model_dir), max_seq_length=a.max_length, dtype=None, load_in_4bit=True,
        use_gradient_checkpointing="unsloth", random_state=SEED)
    model = FastLanguageModel.get_peft_model(
        model, r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=list(TARGETS), bias="none",
        use_gradient_checkpointing="unsloth", random_state=SEED)
    SFTTrainer(model=model, processing_class=tokenizer, train_dataset=chat_dataset(a.data),
               args=sft_args(a, gpu=True), callbacks=[timer]).train()


def train_plain_hf(a: argparse.Namespace, timer: Any) -> None:
    """As the PEFT / TRL QLoRA guides write it; on CPU (the smoke test) fp32 LoRA without bitsandbytes."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    gpu = torch.cuda.is_available()
    if gpu:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(a.model_dir, quantization_config=quant, dtype=torch.bfloat16,
                                                     device_map={"": 0})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32)
    SFTTrainer(model=model, processing_class=AutoTokenizer.from_pretrained(a.model_dir),
               train_dataset=chat_dataset(a.data), args=sft_args(a, gpu=gpu), callbacks=[timer],
               peft_config=LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=list(TARGETS),
                                      bias="none", task_type="CAUSAL_LM")).train()


def chat_dataset(path: Path) -> Any:
    """The JSONL's ``messages`` as TRL's conversational prompt/completion (loss on the answer), as ours does."""
    from datasets import load_dataset

    rows = load_dataset("json", data_files=str(path), split="train")
    return rows.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                    remove_columns=["messages"])


def sft_args(a: argparse.Namespace, gpu: bool) -> Any:
    """The SFTConfig our job builds for these settings, written out by hand."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=f"out-{a.child}", max_steps=a.steps, per_device_train_batch_size=a.batch_size,
        learning_rate=LR, lr_scheduler_type="linear", warmup_steps=WARMUP_RATIO, seed=SEED, data_seed=SEED,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, max_length=a.max_length,
        packing=False, completion_only_loss=True, gradient_checkpointing=True, bf16=gpu, use_cpu=not gpu)


def child(a: argparse.Namespace) -> None:
    """One build or one training run; its result goes to ``--result`` as JSON."""
    if a.child in ("a1", "b"):
        import unsloth  # noqa: F401  before transformers, TRL and peft, as Unsloth asks
    import torch

    result: dict[str, Any] = {}
    if a.child == "build":
        build_model(a)
    else:
        timer = step_timer()
        {"a": train_ours, "a1": train_ours, "b": train_plain_unsloth, "c": train_plain_hf}[a.child](a, timer)
        result = timer.summary(a.warmup)
        cuda = torch.cuda.is_available()
        result["peak_bytes"] = torch.cuda.max_memory_allocated() if cuda else peak_rss()
        result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved() if cuda else None
    a.result.write_text(json.dumps({**result, "device": device_info(), "versions": versions()}))


def peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_info() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"name": "cpu", "memory_bytes": None, "cuda": None, "torch": torch.__version__}
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_bytes": props.total_memory, "cuda": torch.version.cuda,
            "capability": f"{props.major}.{props.minor}", "torch": torch.__version__}


def versions() -> dict[str, str | None]:
    """From package metadata, so that asking imports nothing (a child for (c) must not import unsloth)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "unsloth",
                 "unsloth_zoo", "xformers", "triton"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# ------------------------------------------------------------------------------------------------ parent

def run_child(kind: str, a: argparse.Namespace, model: str, folder: Path, data: Path | None) -> dict[str, Any]:
    """Run one child in its own process group (killed whole on timeout); its result, or its error."""
    result, log = a.work / f"{model}-{kind}.json", a.work / "logs" / f"{model}-{kind}.log"
    result.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--child", kind, "--model", model, "--model-dir",
           str(folder), "--result", str(result), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--batch-size", str(a.batch_size), "--max-length", str(a.max_length)]
    if data:
        cmd += ["--data", str(data)]
    env = {**os.environ, **CHILD_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=a.work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    wall = round(time.perf_counter() - start, 1)
    if code == 0 and result.exists():
        return {"ok": True, **json.loads(result.read_text()), "wall_s": wall}
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"(Error|Exception)\b|out of memory", line)]
    error = f"timed out after {a.timeout} s" if code is None else (errors or lines or [f"exit code {code}"])[-1]
    print(f"  failed: {error[:300]}\n  log {log}, last lines:\n    " + "\n    ".join(lines[-15:]), flush=True)
    return {"ok": False, "error": error[:500], "log_tail": lines[-15:], "wall_s": wall}


def model_folder(a: argparse.Namespace, model: str) -> tuple[Path, dict[str, Any]]:
    """The random model's folder, built once per work folder (the build is seeded, so a rebuild is the
    same), and the device it was built on ({} when an earlier run built it)."""
    folder = a.work / f"model-{model}"
    marker = folder / "built.json"
    if marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(MODELS[model])):
        return folder, {}
    shutil.rmtree(folder, ignore_errors=True)
    print(f"[{model}] building a random model from its config", flush=True)
    built = run_child("build", a, model, folder, None)
    if not built["ok"]:
        raise SystemExit(f"building the {model} model failed: {built['error']}")
    print(f"[{model}] built in {built['wall_s']} s on {built['device']['name']}", flush=True)
    return folder, built["device"]


def write_data(folder: Path, rows: int, max_length: int) -> tuple[Path, list[int]]:
    """Chat rows of random words, each 93-99.6% of ``max_length`` tokens with the model's template, so
    nothing is cut and padding is small but present; the same file serves every method."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    rng = random.Random(SEED)

    def length(messages: list[dict[str, str]]) -> int:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    lines, lengths = [], []
    for i in range(rows):
        target = rng.randint(int(max_length * 0.93), max_length - 8)
        user = f"Ticket {i}: " + " ".join(rng.choice(WORDS) for _ in range(target // 3))
        answer = [rng.choice(WORDS) for _ in range(target)]

        def messages(n: int) -> list[dict[str, str]]:
            return [{"role": "system", "content": "You answer support tickets."}, {"role": "user", "content": user},
                    {"role": "assistant", "content": " ".join(answer[:n])}]

        lo, hi = 1, len(answer)  # the most answer words that keep the row within the target
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if length(messages(mid)) <= target else (lo, mid - 1)
        lengths.append(length(messages(lo)))
        assert lengths[-1] <= target, f"row {i}: the prompt alone is over {target} tokens"
        lines.append(json.dumps({"messages": messages(lo)}))
    path = folder.parent / f"data-{folder.name}-{rows}x{max_length}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, lengths


def planner(folder: Path, a: argparse.Namespace) -> dict[str, Any]:
    """The planner's peak for these settings. It depends on no GPU; naming one keeps ``plan`` from asking
    torch for this machine's, which would open a CUDA context in this process for the children's whole run."""
    from jupyter_finetune import api

    chosen = api.plan(str(folder), gpu="H100", quant="none" if a.smoke else "4bit", batch_size=a.batch_size,
                      max_length=a.max_length, gradient_checkpointing=True, rank=RANK).chosen
    return {"allocated_bytes": chosen.allocated, "total_bytes": chosen.total, "components": dict(chosen.rows())}


def summarise(entry: dict[str, Any], peak_tflops: float | None) -> None:
    """MFU and planner error per method, then each target, from the (possibly merged) cells."""
    cells = entry["methods"]
    for cell in cells.values():
        if cell["ok"]:
            cell["mfu"] = (round(6 * entry["parameters"] * cell["tokens_per_s"] / (peak_tflops * 1e12), 4)
                           if peak_tflops else None)
            cell["planner_error"] = round(entry["planner"]["allocated_bytes"] / cell["peak_bytes"] - 1, 3)
    ok = {m: c for m, c in cells.items() if c["ok"]}
    targets = {}
    if "a" in ok and "b" in ok:
        targets["(a)/(b) time per token"] = (ok["b"]["tokens_per_s"] / ok["a"]["tokens_per_s"], "<=", 1.03)
    if "a" in ok and "c" in ok:
        targets["(a)/(c) tokens/s"] = (ok["a"]["tokens_per_s"] / ok["c"]["tokens_per_s"], ">=", 1.5)
        targets["(a)/(c) peak memory"] = (ok["a"]["peak_bytes"] / ok["c"]["peak_bytes"], "<=", 0.7)
    for m, c in ok.items():
        targets[f"planner vs ({m}) peak, |error|"] = (abs(c["planner_error"]), "<=", 0.15)
    entry["targets"] = {name: {"value": round(v, 3), "target": f"{op} {t}", "met": v <= t if op == "<=" else v >= t}
                        for name, (v, op, t) in targets.items()}


def merge(previous: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """Cells of an earlier run on the same GPU with the same settings are kept unless run again."""
    if not previous:
        return result
    if previous.get("device", {}).get("name") != result["device"].get("name") \
            or previous.get("settings") != result["settings"]:
        print("the earlier results there are for another GPU or other settings: replaced, not merged")
        return result
    models = previous.get("models", {})
    for name, entry in result["models"].items():
        entry["methods"] = {**models.get(name, {}).get("methods", {}), **entry["methods"]}
        models[name] = entry
    return {**result, "models": models}


def print_table(result: dict[str, Any], labels: dict[str, str]) -> None:
    gib = 1024**3
    header = ("model", "method", "tokens/s", "peak GiB", "MFU", "planner GiB", "planner err", "tokens", "seconds",
              "batches")
    rows = [header]
    for name, entry in result["models"].items():
        plan = f"{entry['planner']['allocated_bytes'] / gib:.2f}"
        for m, c in entry["methods"].items():
            if not c["ok"]:
                rows.append((name, f"({m}) {labels.get(m, m)}", "FAILED: " + c["error"][:90]))
                continue
            mfu = f"{c['mfu']:.1%}" if c["mfu"] is not None else "-"
            rows.append((name, f"({m}) {labels.get(m, m)}", f"{c['tokens_per_s']:,.0f}",
                         f"{c['peak_bytes'] / gib:.2f}", mfu, plan, f"{c['planner_error']:+.1%}", f"{c['tokens']:,}",
                         f"{c['seconds']:.2f}", c["batches"]))
    widths = [max(len(r[i]) for r in rows if len(r) > i and (i < 2 or len(r) == len(header)))  # not FAILED's text
              for i in range(len(header))]
    print("\n" + "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    for name, entry in result["models"].items():
        for target, t in entry["targets"].items():
            print(f"{name}: {target} = {t['value']:.3f} (target {t['target']}): {'met' if t['met'] else 'MISSED'}")


def parent(a: argparse.Namespace) -> None:
    from results_io import report

    from jupyter_finetune.models.gpus import gpu_table
    from jupyter_finetune.models import load_config
    from jupyter_finetune.models.size import parameter_count

    os.environ.update(CHILD_ENV)
    own_work = a.work is None
    a.work = Path(tempfile.mkdtemp(prefix="bench-gpu-")) if own_work else a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    labels = SMOKE_LABELS if a.smoke else LABELS
    settings = {"steps": a.steps, "warmup_steps": a.warmup, "batch_size": a.batch_size, "max_length": a.max_length,
                "rank": RANK, "alpha": ALPHA, "dropout": DROPOUT, "target_modules": list(TARGETS), "lr": LR,
                "warmup_ratio": WARMUP_RATIO, "seed": SEED, "packing": False, "gradient_checkpointing": True,
                "loss": "answers only", "quant": "none (CPU smoke)" if a.smoke else "NF4, double quant, bf16 compute"}
    device: dict[str, Any] = {}
    models: dict[str, Any] = {}
    try:
        for name in a.models:
            folder, built_on = model_folder(a, name)
            device = device or built_on
            data, lengths = write_data(folder, max(16, a.steps * a.batch_size), a.max_length)
            cells = {}
            for m in a.methods:
                print(f"[{name}] ({m}) {labels[m]}: {a.steps} steps, {a.warmup} warm-up", flush=True)
                cells[m] = run_child(m, a, name, folder, data)
                device = device or cells[m].get("device", {})
                if cells[m]["ok"]:
                    print(f"  {cells[m]['tokens_per_s']:,.0f} tokens/s, peak {cells[m]['peak_bytes'] / 1024**3:.2f} "
                          f"GiB, {cells[m]['wall_s']} s in all", flush=True)
            models[name] = {"config": MODELS[name], "parameters": parameter_count(load_config(str(folder))),
                            "rows": len(lengths),
                            "row_tokens_min_mean_max": [min(lengths), round(sum(lengths) / len(lengths)), max(lengths)],
                            "planner": planner(folder, a), "methods": cells}
    finally:
        if a.keep:
            print(f"kept {a.work}: pass --work {a.work} to reuse its models", flush=True)
        elif own_work:
            shutil.rmtree(a.work, ignore_errors=True)
        else:
            for name in a.models:
                shutil.rmtree(a.work / f"model-{name}", ignore_errors=True)
    gpu = gpu_table().match(device["name"], device["memory_bytes"]) if device.get("memory_bytes") else None
    device.update(table_entry=gpu.name if gpu else None, peak_bf16_tflops=gpu.bf16_tflops if gpu else None)
    result = {"benchmark": "QLoRA training: (a) our API, unsloth backend; (b) plain Unsloth + TRL; "
                           "(c) plain transformers + peft + bitsandbytes",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "smoke": a.smoke,
              "device": device, "settings": settings, "labels": labels, "models": models,
              "mfu": "6 x parameters x non-padding tokens/s / peak_bf16_tflops (attention FLOPs left out)",
              "planner": "api.plan(...).chosen.allocated, gradient checkpointing on; error = planner / measured - 1"}
    gpu_name = device.get("table_entry") or device.get("name", "unknown")
    out = a.out or Path(__file__).parent / "results" / f"gpu-{slug(gpu_name)}.json"
    result = merge(json.loads(out.read_text()) if out.exists() else None, result)
    for entry in result["models"].values():
        summarise(entry, device["peak_bf16_tflops"])
    report(result, out)
    print_table(result, labels)
    print(f"\nwritten to {out}")
    if a.smoke:
        check_smoke(result)


def check_smoke(result: dict[str, Any]) -> None:
    """The plumbing works end to end, and (a) and (c) trained on exactly the same tokens."""
    for name, entry in result["models"].items():
        failed = {m: c["error"] for m, c in entry["methods"].items() if not c["ok"]}
        if failed:
            raise SystemExit(f"smoke: {name}: failed {failed}")
        tokens = {m: c["tokens"] for m, c in entry["methods"].items()}
        if len(set(tokens.values())) != 1:
            raise SystemExit(f"smoke: {name}: methods counted different tokens {tokens}: the comparison is unfair")
        trl = {m: c["tokens_trl"] for m, c in entry["methods"].items()}
        if trl != tokens:
            raise SystemExit(f"smoke: {name}: the hook counted {tokens} tokens but TRL {trl}")
    print("smoke: every method ran, each counted the same non-padding tokens, and TRL's count agrees "
          "(the speeds and memory of a tiny model on a CPU mean nothing)")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=lambda s: s.split(","), help="of 1b, 8b (default both); tiny with --smoke")
    p.add_argument("--methods", type=lambda s: s.split(","), help="of a, a1, b, c (default a,b,c; a,c with --smoke)")
    p.add_argument("--steps", type=int, help="optimizer steps per method (default 30; 4 with --smoke)")
    p.add_argument("--warmup", type=int, help="first steps left out of the timing (default 5; 1 with --smoke)")
    p.add_argument("--batch-size", type=int, help="sequences per step (default 4; 2 with --smoke)")
    p.add_argument("--max-length", type=int, help="tokens per sequence (default 2048; 256 with --smoke)")
    p.add_argument("--timeout", type=int, default=1200, help="seconds one method may take, load included")
    p.add_argument("--work", type=Path, help="folder for the models, data and logs (default: a new temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the models (a later run with the same --work reuses them)")
    p.add_argument("--out", type=Path, help="result JSON (default bench/results/gpu-<gpu>.json; merged if it exists)")
    p.add_argument("--smoke", action="store_true", help="CPU plumbing check: tiny model, numbers mean nothing")
    p.add_argument("--child", choices=("build", *LABELS), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    defaults = ({"models": ["tiny"], "methods": ["a", "c"], "steps": 4, "warmup": 1, "batch_size": 2,
                 "max_length": 256} if a.smoke else
                {"models": ["1b", "8b"], "methods": ["a", "b", "c"], "steps": 30, "warmup": 5, "batch_size": 4,
                 "max_length": 2048})
    for key, value in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.child:
        child(a)
        return
    sys.path.append(str(ROOT))  # jupyter_finetune, where it is not installed (a GPU machine's bare python)
    if a.smoke and a.out is None:
        a.out = Path(tempfile.gettempdir()) / "bench-gpu-smoke.json"
    unknown = [m for m in a.methods if m not in (SMOKE_LABELS if a.smoke else LABELS)]
    unknown += [m for m in a.models if m not in MODELS]
    if unknown or not 1 <= a.warmup < a.steps:
        p.error(f"unknown models or methods {unknown}" if unknown else "--warmup must be from 1 to below --steps")
    parent(a)


if __name__ == "__main__":
    main()
