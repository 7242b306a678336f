"""How big a model is, from its config alone (no weights loaded)."""

from __future__ import annotations

from typing import Any


def parameter_count(config: Any) -> int:
    """Exact count, by building the model on the meta device where nothing is allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def context_length(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "seq_length", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
