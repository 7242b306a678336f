"""Where the peft a platform preinstalls does not fit the libraries beside it.

peft refuses an installed torchao older than it supports, even for a model torchao never touched.
Colab preinstalls torchao 0.10.0 beside peft 0.20.0, whose LoRA layers call ``is_torchao_available()``;
for torchao < 0.16 that raises ImportError, so every LoRA fails there. No model here is quantized with
torchao, so where that check raises, peft is told torchao is absent instead.

peft 0.19 shards every adapter it loads while torch.distributed is initialised for tensor parallelism,
importing transformers' ``EmbeddingParallel`` to do it, which transformers 5.0 lacks: on Kaggle's pair
(peft 0.19.1, transformers 5.0.0), resuming a data-parallel run failed with ImportError. No model here
is tensor-parallel, so where that import fails, the sharding step is skipped.
"""

from __future__ import annotations

import importlib
import logging
import sys
from functools import cache

log = logging.getLogger(__name__)


def _absent() -> bool:
    return False


@cache
def tolerate_old_torchao() -> None:
    """Call before peft builds or loads LoRA layers; a no-op where peft accepts the torchao installed."""
    from peft import import_utils

    check = getattr(import_utils, "is_torchao_available", None)
    if check is None:
        return
    try:
        check()
        return
    except ImportError as exc:
        reason = str(exc)
    for name in ("peft.tuners.lora.torchao", "peft.utils.quantization_utils"):  # the modules that call it
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "peft" and getattr(module, "is_torchao_available", None) is check:
            module.is_torchao_available = _absent
    log.info("peft: %s; torchao is treated as absent (no model here is quantized with it)", reason)


@cache
def tolerate_tensor_parallel_gap() -> None:
    """Call before a process of a launch loads an adapter (a resume); a no-op where peft's sharding step
    runs with the transformers installed (peft 0.21 imports only for a tensor-parallel model)."""
    import torch
    from peft.utils import save_and_load

    shard = getattr(save_and_load, "_maybe_shard_state_dict_for_tp", None)
    if shard is None:
        return
    try:
        shard(torch.nn.Module(), {}, "default")  # no LoRA layer: nothing to shard, once the imports work
    except ImportError as exc:
        save_and_load._maybe_shard_state_dict_for_tp = lambda model, state_dict, adapter_name: None
        log.info("peft: %s; adapters are loaded unsharded (no model here is tensor-parallel)", exc)
