"""How big a model is, from its config alone (no weights loaded)."""

from __future__ import annotations

from typing import Any


def parameter_count(config: Any) -> int:
    """Exact count, by building the model on the meta device where nothing is allocated.

    Tied weights (lm_head sharing the embedding) count once: ``parameters()`` yields a shared tensor
    once, provided it is shared. transformers 5.0.0 skips the tying on the meta device (``init_weights``
    ties only off it; 5.1 ties on both), so the model is tied here explicitly: ``tie_weights()`` reads the
    config's ``tie_word_embeddings`` (a sub-model's too) and is a no-op where the weights are tied already.
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        model.tie_weights()
    return sum(p.numel() for p in model.parameters())


def context_length(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "seq_length", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
