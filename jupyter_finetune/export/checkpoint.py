"""safetensors checkpoints read and written a block of rows at a time, never a whole shard in memory.

Hub shards are ~5 GB and an 8B model's embedding alone is 2 GB in fp32, while a Colab VM has
12.7 GB of host RAM. So tensors are read by file offset (no mmap, whose touched pages would
pile up in the process's RSS over a shard) and written into a file whose header is laid out
before the first byte of data, which is what lets the merge write each shard as it goes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

from .result import ExportError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CHUNK_VALUES = 2**24
"""Values per block of rows (64 MB in fp32): large enough to keep numpy and torch efficient, small enough that
the fp32 temporaries of a merge or a quantization stay far below the RAM budget."""

_TORCH_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                 "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_CODES = {name: code for code, name in _TORCH_DTYPES.items()}


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a safetensors file: where its bytes are and how to read them."""

    name: str
    file: Path
    dtype: str
    """The safetensors code: F32, BF16, ..."""
    shape: tuple[int, ...]
    start: int
    """Absolute offset of the first byte in ``file``."""

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_values(self) -> int:
        values = 1
        for size in self.shape[1:]:
            values *= size
        return values

    @property
    def torch_dtype(self) -> str:
        return _TORCH_DTYPES[self.dtype]

    @property
    def is_float(self) -> bool:
        return self.dtype in ("F64", "F32", "F16", "BF16")

    def row_blocks(self) -> Iterator[tuple[int, int]]:
        """(start, stop) row ranges of at most CHUNK_VALUES values each, covering the tensor."""
        step = max(1, CHUNK_VALUES // max(1, self.row_values))
        for first in range(0, self.rows, step):
            yield first, min(self.rows, first + step)

    def read(self, first: int, stop: int) -> Any:
        """Rows ``first:stop`` as a torch tensor in the stored dtype (a 0-D or 1-D tensor reads whole)."""
        import torch

        dtype = getattr(torch, self.torch_dtype)
        row_bytes = self.row_values * torch.empty((), dtype=dtype).element_size()
        buffer = bytearray((stop - first) * row_bytes)
        with open(self.file, "rb") as f:
            f.seek(self.start + first * row_bytes)
            if f.readinto(buffer) != len(buffer):
                raise ExportError(f"{self.file} ends before the data of tensor {self.name!r}: the base model's "
                                  "weights are truncated; download or convert the model again")
        shape = (stop - first, *self.shape[1:]) if self.shape else ()
        return torch.frombuffer(buffer, dtype=dtype).reshape(shape) if buffer else torch.empty(shape, dtype=dtype)


@dataclass(frozen=True)
class Checkpoint:
    """A model folder's safetensors weights: each shard file with its tensors in stored order."""

    folder: Path
    shards: tuple[tuple[str, tuple[StoredTensor, ...]], ...]
    """(file name, its tensors), in the order the index names the files."""

    @classmethod
    def at(cls, folder: Path) -> "Checkpoint":
        """Reads only the headers; an error naming the folder when it holds no safetensors weights."""
        folder = Path(folder)
        if (folder / INDEX).is_file():
            weight_map = json.loads((folder / INDEX).read_text())["weight_map"]
            files = list(dict.fromkeys(weight_map.values()))
        elif (folder / SINGLE).is_file():
            files = [SINGLE]
        else:
            raise ExportError(f"{folder} has no safetensors weights ({SINGLE} or {INDEX}); merged, GGUF and Ollama "
                              "exports read the base model from them. Save the base with save_pretrained "
                              "(safe_serialization=True) and train from that folder")
        return cls(folder, tuple((name, _header(folder / name)) for name in files))

    @property
    def sharded(self) -> bool:
        return (self.folder / INDEX).is_file()

    def tensors(self) -> Iterator[StoredTensor]:
        for _, tensors in self.shards:
            yield from tensors

    def names(self) -> set[str]:
        return {t.name for t in self.tensors()}


def _header(path: Path) -> tuple[StoredTensor, ...]:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    tensors = [StoredTensor(name, path, spec["dtype"], tuple(spec["shape"]), 8 + size + spec["data_offsets"][0])
               for name, spec in header.items()]
    return tuple(sorted(tensors, key=lambda t: t.start))


class SafetensorsWriter:
    """A safetensors file whose header is written first and whose tensors then arrive in order, block by block."""

    def __init__(self, path: Path, tensors: Sequence[tuple[str, str, tuple[int, ...]]]):
        """``tensors``: (name, torch dtype name, shape) in the order their data will be written."""
        import torch

        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        self._expected: list[tuple[str, int]] = []
        offset = 0
        for name, dtype, shape in tensors:
            size = torch.empty((), dtype=getattr(torch, dtype)).element_size()
            for dim in shape:
                size *= dim
            header[name] = {"dtype": _CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
            self._expected.append((name, size))
            offset += size
        self.data_bytes = offset
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        self._file: BinaryIO = open(path, "wb")
        self._file.write(struct.pack("<Q", len(text)) + text)
        self._written = 0

    def write(self, name: str, blocks: Iterator[Any]) -> None:
        """The next tensor's data as torch tensor blocks of rows (in the dtype the header gave it)."""
        import torch

        expected_name, size = self._expected.pop(0)
        assert name == expected_name, (name, expected_name)
        written = 0
        for block in blocks:
            data = block.contiguous().view(-1).view(torch.uint8).numpy()
            data.tofile(self._file)
            written += data.nbytes
        assert written == size, (name, written, size)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
