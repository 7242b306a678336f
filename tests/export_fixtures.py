"""Builders for the export tests: tiny models of each GGUF family, a LoRA adapter that matters, a finished run.

No training: the adapter is made with peft directly and its B matrices set to random values, so
that base + adapter differs from the base and a wrong merge or a dropped adapter shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_finetune.engine import TrainConfig
from jupyter_finetune.runs import DataManifest, Run, RunSettings, RunStore

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj"]
"""Every linear layer of every family (Phi-3 fuses q/k/v and gate/up); peft skips names a model lacks."""
FAMILY_SETTINGS: dict[str, dict[str, Any]] = {
    "qwen3": dict(head_dim=128),
    "gemma2": dict(head_dim=256, query_pre_attn_scalar=256, sliding_window=8),
    "gemma3_text": dict(head_dim=256, query_pre_attn_scalar=256, sliding_window=8, num_hidden_layers=6),
    "phi3": dict(original_max_position_embeddings=512),
}
"""Per family, on top of the shared tiny shape: head sizes as Google's and Qwen's checkpoints have them
(transformers' GGUF reader assumes them), sliding windows shorter than the test texts so they matter,
and Gemma 3's 5 sliding + 1 global layer pattern once."""
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                   patch_size=8)
"""A SigLIP tower for multimodal Gemma 3, which the GGUF leaves out."""
SYSTEM = "You sort support tickets. Reply with JSON."
MISTRAL_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def tiny_model(folder: Path, tokenizer: Any, family: str = "llama", seed: int = 0, **overrides: Any) -> Path:
    """A random 2-layer model of ``family`` (a model_type) saved with ``tokenizer``; weights large enough that
    attention is not uniform.

    With the usual 0.02 initialisation every attention score is ~0, so a q/k permutation error
    would not change the logits; 0.1 makes scores of order 1 and logits of order 1-10.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=512,
                    eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                    pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=family != "qwen2", initializer_range=0.1,
                    rms_norm_eps=1e-6)
    torch.manual_seed(seed)
    if family == "gemma3":  # multimodal: the tiny shape is its language model's, next to a tiny vision tower
        config = AutoConfig.for_model(family, text_config={**settings, **FAMILY_SETTINGS["gemma3_text"], **overrides},
                                      vision_config=TINY_VISION, mm_tokens_per_image=4)
    else:
        config = AutoConfig.for_model(family, **{**settings, **FAMILY_SETTINGS.get(family, {}), **overrides})
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # norms and biases away from their 1/0 init, so a mis-mapped one shows too
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def lora_adapter(model_dir: Path, folder: Path, tokenizer: Any, seed: int = 1, scale: float = 0.1,
                 **lora_options: Any) -> Any:
    """A LoRA adapter on every linear layer with random B (as if trained), saved as the trainer saves one;
    ``lora_options`` change its LoraConfig (targets, rsLoRA, DoRA, ...).

    Returns the in-memory base + adapter model (fp32) as the reference to compare exports with.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    options = dict(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0, task_type="CAUSAL_LM")
    torch.manual_seed(seed)  # before peft draws A: else A, and so a test's outcome, follow the tests run before it
    model = get_peft_model(base, LoraConfig(**{**options, **lora_options}))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                param.copy_(torch.randn_like(param) * scale)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model.eval()


def finished_run(runs_dir: Path, name: str, model: str, *, quant: str = "none",
                 conversations: list[list[dict[str, str]]] | None = None) -> Run:
    """A completed run folder as %ft_train leaves it, minus the adapter (``run.adapter_dir`` is to be filled)."""
    run = RunStore.at(runs_dir).create(name)
    config = TrainConfig(model=model, steps=3, rank=8, alpha=16, quant=quant)
    rows = conversations or [ticket(i) for i in range(3)]
    lines = [json.dumps({"messages": m, "split": "train" if i else "test", "row": i}) for i, m in enumerate(rows)]
    run.begin(RunSettings(config.to_dict(), "quick", "hf: test", model),
              DataManifest("tickets", "0123456789ab", "messages", "0.1", 0, model, 1024, len(rows) - 1, 1, 60, 30.0, 31),
              "\n".join(lines) + "\n")
    for step, loss in enumerate((2.0, 1.5, 1.25), start=1):
        run.append_metrics({"step": step, "loss": loss, "eval_loss": None})
    run.append_metrics({"step": 3, "loss": None, "eval_loss": 1.375})
    run.set_status("completed", step=3, message="completed at step 3")
    return run


def ticket(i: int, system: str | None = SYSTEM) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": f"Ticket {i}: the printer on floor {i} is broken."},
                {"role": "assistant", "content": json.dumps({"team": "it", "priority": "high"})}]
    return ([{"role": "system", "content": system}] if system else []) + messages


GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
                  "else 'user' }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}")


def sentencepiece_tokenizer(style: str = "llama") -> Any:
    """A sentencepiece-style BPE (byte fallback, '▁' for spaces) as transformers builds one: ``llama`` as in
    Llama 2 / Mistral / Phi-3 (a '▁' before the first word), or ``gemma`` as in Gemma 2 and 3 (none, and
    <start_of_turn>/<end_of_turn> turns)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizer, LlamaTokenizer

    from conftest import CORPUS

    gemma = style == "gemma"
    backend = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never" if gemma else "first",
                                                     split=False)
    backend.train_from_iterator(CORPUS * 20, trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>"]))
    spec = json.loads(backend.to_str())["model"]
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"] if gemma else ["<unk>", "<s>", "</s>"]
    vocab = {**{t: i for i, t in enumerate(specials)}, **{f"<0x{b:02X}>": len(specials) + b for b in range(256)}}
    for token in sorted(spec["vocab"], key=spec["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) for m in spec["merges"]]
    if gemma:
        tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True,
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
        tokenizer.chat_template = GEMMA_TEMPLATE
        return tokenizer
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                               add_bos_token=True)
    tokenizer.chat_template = MISTRAL_TEMPLATE
    return tokenizer


def tiny_run(root: Path, tokenizer: Any, family: str = "llama", name: str | None = None,
             model_overrides: dict[str, Any] | None = None, **run_options: Any) -> tuple[Run, Any]:
    """A finished run on a fresh tiny model of ``family`` with a LoRA adapter; and base + adapter as reference."""
    name = name or f"tiny-{family}"
    model_dir = tiny_model(root / f"{name}-base", tokenizer, family, **(model_overrides or {}))
    run = finished_run(root / "ft_runs", name, str(model_dir), **run_options)
    return run, lora_adapter(model_dir, run.adapter_dir, tokenizer)


def logits(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """fp32 logits of each text (one batch per text, so padding plays no part)."""
    import torch

    with torch.no_grad():
        return [model(torch.tensor([tokenizer(t)["input_ids"]])).logits[0] for t in texts]


def max_diff(a: list[Any], b: list[Any]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))
