"""Out of memory, recognised and recovered from the same way by training and by evaluation.

A CUDA allocation failure is ``torch.OutOfMemoryError``; on CPU torch raises a plain RuntimeError
("DefaultCPUAllocator: can't allocate memory"), and Python a MemoryError: all three are the same
event to a user, who can go on with a smaller batch.
"""

from __future__ import annotations

import gc


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    text = str(exc).lower()
    return (isinstance(exc, (torch.OutOfMemoryError, MemoryError))
            or "out of memory" in text or "can't allocate memory" in text)


def free_memory() -> None:
    """Give back what the dropped tensors held (call it outside the ``except`` block, whose traceback
    still pins them)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
