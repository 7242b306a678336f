"""What an export wrote, and the errors a user can fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FinetuneError

KINDS = ("adapter", "merged", "gguf", "ollama", "script")
QUANTS = ("f16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
DEFAULT_QUANT = {"gguf": "f16", "ollama": "q4_k_m"}
"""What --quant is when not given: a lossless file for gguf (to quantize further), the size Ollama users pull."""


class ExportError(FinetuneError, ValueError):
    """An export refused before anything is written; the message says what to do instead."""


class ExportExists(FinetuneError, FileExistsError):
    """The target exists and --overwrite was not given."""


@dataclass(frozen=True)
class ExportedFile:
    path: str
    """Relative to the export's folder."""
    bytes: int


@dataclass(frozen=True)
class ExportResult:
    """One finished export, as recorded with the run."""

    run: str
    kind: str
    path: Path
    """The folder (adapter, merged, ollama, script) or the .gguf file (gguf)."""
    files: tuple[ExportedFile, ...]
    quant: str | None = None
    """One of QUANTS for gguf and ollama; None for the other kinds."""
    notes: tuple[str, ...] = ()
    """Things the user should know, e.g. which base weights a quantized run was merged into."""
    command: str | None = None
    """The shell command that finishes the job (ollama create, accelerate launch), if there is one."""
    created: float = field(default=0.0, compare=False)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "bytes": self.bytes}

    def summary(self) -> str:
        quant = f" ({self.quant})" if self.quant else ""
        lines = [f"exported run {self.run!r} as {self.kind}{quant} to {self.path} ({_size(self.bytes)}):"]
        lines += [f"  {f.path}  {_size(f.bytes)}" for f in self.files]
        lines += [f"note: {n}" for n in self.notes]
        if self.command:
            lines.append(f"next, run: {self.command}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
