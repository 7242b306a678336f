"""Peak training memory from a model's config alone: weights, LoRA, gradients, optimizer, activations.

Every number is in bytes so that an estimate can be set beside a measured peak (on CPU in the
tests, ``torch.cuda.max_memory_allocated`` on a GPU). The block is counted as a Llama-style
decoder layer (attention with grouped KV heads, gated MLP); other architectures are approximated
by the same shapes read from their config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidValue
from .size import context_length, parameter_count

METHODS = ("lora", "full", "dpo", "orpo")
"""LoRA adapters on a frozen base, every weight trained, or LoRA trained on preference pairs (DPO, ORPO)."""
PREFERENCE_METHODS = ("dpo", "orpo")
"""LoRA methods whose examples are pairs of answers."""
PAIR_SEQUENCES = 2
"""Sequences per example under DPO and ORPO: TRL runs a batch of N pairs as one batch of 2N sequences (each
chosen and each rejected answer after its prompt, padded to the longest of them), so activations and logits
are those of 2N sequences (without LoRA dropout's copies: TRL turns dropout off, ``saved_values_per_token``).
DPO's reference is the base with the adapter switched off (peft's ``disable_adapter``), so it adds no second
copy of the weights, only a no-grad forward pass of those 2N sequences (``reference_bytes``; its time is in
models.speed.flops_per_token). ORPO has no reference."""
GIB = 1024**3
CUDA_OVERHEAD_BYTES = GIB // 2
"""CUDA context, cuBLAS workspace and allocator slack, not seen by ``torch.cuda.max_memory_allocated``.

An empty CUDA context alone takes 300-500 MiB on recent drivers (nvidia-smi right after
``torch.cuda.init()``); half a GiB is the round figure used here.
"""
NF4_BLOCK = 64
"""bitsandbytes NF4 quantizes blocks of 64 weights, each with one absmax constant."""
NF4_DOUBLE_QUANT_BLOCK = 256
"""With double quantization the absmax constants are stored in 8 bits, with one fp32 per 256 of them."""
FP32 = 4


@dataclass(frozen=True)
class Precision:
    """How the base weights and activations are held: 16-bit on a GPU, fp32 on a CPU."""

    name: str
    compute_bytes: int
    overhead_bytes: int


GPU_16BIT = Precision("bf16/fp16 (GPU)", 2, CUDA_OVERHEAD_BYTES)
CPU_FP32 = Precision("fp32 (CPU)", 4, 0)


@dataclass(frozen=True)
class ModelShape:
    """The sizes the memory arithmetic needs, read from a transformers config."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    parameters: int
    """Exact total, counted on the meta device (nothing allocated)."""
    context: int | None

    @classmethod
    def from_config(cls, config: Any) -> "ModelShape":
        hidden = config.hidden_size
        heads = config.num_attention_heads
        return cls(
            hidden=hidden, intermediate=getattr(config, "intermediate_size", None) or 4 * hidden,
            layers=config.num_hidden_layers, heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or hidden // heads, vocab=config.vocab_size,
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            parameters=parameter_count(config), context=context_length(config),
        )

    def layer_linears(self) -> tuple[tuple[int, int], ...]:
        """(in, out) of each linear of one block: q, k, v, o, gate, up, down; what "all-linear" adapts."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return ((h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h))

    @property
    def layer_parameters(self) -> int:
        """One decoder block: its linears and its two norms (input and post-attention, ``hidden`` each)."""
        return sum(a * b for a, b in self.layer_linears()) + 2 * self.hidden

    @property
    def root_parameters(self) -> int:
        """Everything outside the blocks: embeddings, lm_head (unless tied) and the final norm."""
        return self.parameters - self.layers * self.layer_parameters

    @property
    def linear_parameters(self) -> int:
        """Weights of the decoder blocks' linears: the part 4-bit quantization shrinks.

        Embeddings, lm_head and norms stay in 16 bits (bitsandbytes replaces only the blocks' linears).
        """
        return self.layers * sum(a * b for a, b in self.layer_linears())

    def lora_parameters(self, rank: int) -> int:
        """r x (in + out) per adapted linear (A is r x in, B is out x r), every linear of every block."""
        return self.layers * sum(rank * (a + b) for a, b in self.layer_linears())

    def saved_values_per_token(self, rank: int | None, dropout: bool = True) -> int:
        """Values one block keeps for the backward pass, per token (SDPA attention: no seq² term).

        ``rank`` None means no adapters (full fine-tuning). ``dropout`` False: LoRA dropout is off (TRL's
        preference trainers set every dropout to 0, DPOConfig/ORPOConfig.disable_dropout being on by default),
        so an adapted linear's input is a tensor kept already, not a dropped-out copy.

        norms: input, normalised output, 2 x h each              -> 4h
        attention: q, k before and after RoPE, v, rotate_half(q, k), output
                   -> 3 q + 3 kv + kv + q = 4 q + 4 kv
        MLP: gate, up, silu(gate), silu(gate) * up               -> 4i
        LoRA: each adapted linear's dropped-out input (5h + q + i, with dropout) and its A output (7r)
        """
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        copies = sum(a for a, _ in self.layer_linears()) if dropout else 0
        lora = 0 if rank is None else copies + 7 * rank
        return 4 * h + 4 * q + 4 * kv + 4 * i + lora


@dataclass(frozen=True)
class MemoryBreakdown:
    """Peak memory of one training step, by component, in bytes.

    The step peaks either as the loss's backward starts (saved activations and the logits'
    copies all alive) or, with gradient checkpointing, while a block is recomputed (the logits'
    copies are freed by then): so the peak counts the larger of ``logits`` and ``recomputed`` (and of DPO's
    ``reference``).
    """

    weights: int
    lora: int
    gradients: int
    optimizer: int
    activations: int
    """Saved for the backward pass: every block's values, or with checkpointing each block's input."""
    logits: int
    recomputed: int
    """One block's values, rebuilt in the backward pass under gradient checkpointing (else 0)."""
    overhead: int
    reference: int = 0
    """DPO's reference forward (no grad, adapter off): its logits and the policy's, alive beside the saved
    activations before the backward pass starts, so the peak counts the largest of ``logits``, ``recomputed``
    and this (``reference_bytes``)."""
    buckets: int = 0
    """DDP's gradient buckets: a second copy of the trainable gradients, all-reduced from there."""
    gathered: int = 0
    """FSDP's unsharded weights alive at once: the root unit and two decoder blocks (see ``estimate_memory``)."""

    @property
    def allocated(self) -> int:
        """What the framework allocates at the peak: compare with ``torch.cuda.max_memory_allocated``."""
        return (self.weights + self.lora + self.gradients + self.optimizer + self.activations
                + max(self.logits, self.recomputed, self.reference) + self.buckets + self.gathered)

    @property
    def total(self) -> int:
        return self.allocated + self.overhead

    def rows(self) -> list[tuple[str, int]]:
        """The components; DPO's reference and the data-parallel ones only for a breakdown that has them."""
        extra = [("reference forward (DPO)", self.reference)] if self.reference else []
        extra += [("DDP gradient buckets", self.buckets)] if self.buckets else []
        extra += [("FSDP gathered weights", self.gathered)] if self.gathered else []
        return [("weights", self.weights), ("LoRA parameters", self.lora), ("gradients", self.gradients),
                ("optimizer states", self.optimizer), ("activations", self.activations), ("logits", self.logits),
                ("recomputed block", self.recomputed), *extra, ("CUDA overhead", self.overhead)]


def weight_bytes(shape: ModelShape, quant: str, precision: Precision) -> int:
    """Base weights: the blocks' (``layer_weight_bytes``) and the rest's (``root_weight_bytes``)."""
    return shape.layers * layer_weight_bytes(shape, quant, precision) + root_weight_bytes(shape, quant, precision)


def layer_weight_bytes(shape: ModelShape, quant: str, precision: Precision) -> int:
    """One decoder block's weights as stored: 16-bit (or fp32 on CPU) per parameter; quantized linears when asked.

    4bit (NF4, double quant): 0.5 byte per weight + 1 byte per 64-weight block + 4 bytes per 256
    blocks; 8bit (LLM.int8): 1 byte per weight + an fp32 scale per output row. The block's norms
    are then fp32, as ``root_weight_bytes`` says why.
    """
    if quant == "none":
        return shape.layer_parameters * precision.compute_bytes
    quantized = 0
    for n_in, n_out in shape.layer_linears():
        n = n_in * n_out
        if quant == "4bit":
            blocks = math.ceil(n / NF4_BLOCK)
            quantized += math.ceil(n / 2) + blocks + FP32 * math.ceil(blocks / NF4_DOUBLE_QUANT_BLOCK)
        else:
            quantized += n + FP32 * n_out
    return quantized + 2 * shape.hidden * FP32


def root_weight_bytes(shape: ModelShape, quant: str, precision: Precision) -> int:
    """Embeddings, lm_head and final norm: never quantized (bitsandbytes replaces only the blocks'
    linears), and fp32 beside a quantized base: peft's prepare_model_for_kbit_training, which the hf
    backend runs on quantized models, upcasts every 16-bit parameter that is not quantized."""
    return shape.root_parameters * (precision.compute_bytes if quant == "none" else FP32)


GENERATION_MEMORY_SHARE = 0.5
"""The share of free memory batched generation plans to fill; the rest is slack for the allocator's
fragments, attention's temporaries and what else the kernel holds."""


def generation_row_bytes(shape: ModelShape, *, tokens: int, dtype_bytes: int) -> int:
    """Memory one generated row holds at its longest: its KV cache for ``tokens`` positions (keys and
    values of every layer's KV heads) and one step's fp32 logits, kept twice while the next token is picked."""
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * dtype_bytes * tokens
    return kv + 2 * shape.vocab * FP32


def generation_batch_size(shape: ModelShape, *, free_bytes: int, tokens: int, dtype_bytes: int, most: int) -> int:
    """The most rows (1 to ``most``) whose generation fits in a share of ``free_bytes``."""
    per_row = generation_row_bytes(shape, tokens=tokens, dtype_bytes=dtype_bytes)
    return max(1, min(most, int(free_bytes * GENERATION_MEMORY_SHARE) // per_row))


def logit_bytes(shape: ModelShape, tokens: int) -> int:
    """tokens x vocab x 12 bytes: three fp32 copies alive as the loss's backward starts.

    Cross-entropy saves its fp32 log-softmax; the backward pass adds that tensor's gradient and
    the logits' fp32 gradient. The lm_head output itself (and its fp32 upcast) is freed once the
    loss is computed, since the Trainer keeps only the loss.
    """
    return tokens * shape.vocab * 3 * FP32


def reference_bytes(shape: ModelShape, tokens: int, precision: Precision) -> int:
    """tokens x vocab x 4 at compute precision, as DPO's reference forward takes its log-probs: its logits and
    their shifted copy (TRL's ``logits[:, :-1].contiguous()``), beside the policy's own two, computed first
    and kept for the backward pass. Log-softmax goes a sequence at a time (TRL's ``selective_log_softmax``),
    and the no-grad forward saves nothing for a backward pass."""
    return tokens * shape.vocab * 4 * precision.compute_bytes


FSDP_PREFETCH_BLOCKS = 2
"""Decoder blocks unsharded at once under FSDP: the one computing and the next, all-gathered ahead (prefetch)."""


def estimate_memory(shape: ModelShape, *, batch_size: int, max_length: int, rank: int, quant: str = "none",
                    method: str = "lora", checkpointing: bool = False, precision: Precision = GPU_16BIT,
                    gpus: int = 1, sharded: bool = False) -> MemoryBreakdown:
    """The peak of one step at ``batch_size`` sequences of ``max_length`` tokens (the padded worst case),
    on each of ``gpus`` data-parallel GPUs; under DPO and ORPO ``batch_size`` pairs, twice the sequences
    (``PAIR_SEQUENCES``), and under DPO a reference forward too.

    LoRA: the adapters are fp32 (peft upcasts them), and each trainable fp32 value has an fp32
    gradient and AdamW's two fp32 states. Full fine-tuning trains every parameter, kept in fp32
    (mixed precision's master copy): 4 + 4 + 8 = 16 bytes per parameter, as in the ZeRO paper.
    Activations at compute precision: every block's saved values plus the final norm's input and
    output; with gradient checkpointing, each block's input instead, and one block recomputed.

    Several GPUs each run their own micro-batch, so activations and logits are per GPU as on one.
    DDP (``sharded`` False) keeps a whole copy of everything on each GPU plus its gradient buckets.
    FSDP (``sharded``, FULL_SHARD, one unit per decoder block as engine.launch wraps it) keeps 1/N
    of the weights, adapters, gradients and optimizer states, and unshards units while they compute:
    ``FSDP_PREFETCH_BLOCKS`` blocks at a time, plus the root unit (embeddings, lm_head, final norm),
    which FSDP keeps unsharded from the forward pass to the end of the backward one. QLoRA under
    FSDP stores its 4-bit weights in the compute dtype's storage (bnb_4bit_quant_storage): the same bytes.
    """
    if method not in METHODS:
        raise InvalidValue(f"method {method!r} is not one of {', '.join(METHODS)}")
    if method == "full" and quant != "none":
        raise InvalidValue("full fine-tuning trains every weight, so the base cannot be quantized: use --quant none")
    if sharded and quant == "8bit":
        raise InvalidValue("FSDP shards 16-bit or 4-bit (QLoRA) weights; bitsandbytes 8-bit cannot be sharded: "
                           "use --quant 4bit or none, or --strategy ddp")
    tokens = batch_size * max_length * (PAIR_SEQUENCES if method in PREFERENCE_METHODS else 1)
    if method == "full":
        trainable, weights, lora = shape.parameters, shape.parameters * FP32, 0
        root, block = shape.root_parameters * FP32, shape.layer_parameters * FP32
    else:
        trainable = shape.lora_parameters(rank)
        weights, lora = weight_bytes(shape, quant, precision), trainable * FP32
        root = root_weight_bytes(shape, quant, precision)
        block = layer_weight_bytes(shape, quant, precision) + lora // shape.layers
    saved = (tokens * shape.saved_values_per_token(None if method == "full" else rank, method not in PREFERENCE_METHODS)
             * precision.compute_bytes)
    kept = tokens * shape.hidden * shape.layers * precision.compute_bytes if checkpointing else saved * shape.layers
    final_norm = tokens * 2 * shape.hidden * precision.compute_bytes
    states = dict(weights=weights, lora=lora, gradients=trainable * FP32, optimizer=2 * trainable * FP32)
    parallel = {}
    if gpus > 1 and sharded:
        states = {k: math.ceil(v / gpus) for k, v in states.items()}
        parallel = dict(gathered=root + FSDP_PREFETCH_BLOCKS * block)
    elif gpus > 1:
        parallel = dict(buckets=trainable * FP32)
    return MemoryBreakdown(**states, activations=kept + final_norm, logits=logit_bytes(shape, tokens),
                           recomputed=saved if checkpointing else 0, overhead=precision.overhead_bytes,
                           reference=reference_bytes(shape, tokens, precision) if method == "dpo" else 0, **parallel)
