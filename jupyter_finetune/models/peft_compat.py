"""peft refuses an installed torchao older than it supports, even for a model torchao never touched.

Colab preinstalls torchao 0.10.0 beside peft 0.20.0, whose LoRA layers call ``is_torchao_available()``;
for torchao < 0.16 that raises ImportError, so every LoRA fails there. No model here is quantized with
torchao, so where that check raises, peft is told torchao is absent instead.
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
