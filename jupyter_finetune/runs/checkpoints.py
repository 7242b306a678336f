"""Which of a run's checkpoints can be resumed from.

The Trainer writes ``checkpoint-N`` in place: weights, optimizer, scheduler, RNG state, and
``trainer_state.json`` last. A kill in the middle leaves a folder that looks like a checkpoint but
is not one, and resuming from it fails with a raw error in safetensors or torch. So every file is
checked by its format before a checkpoint is trusted (the headers and the central directory, not
the tensors: milliseconds for gigabytes), and the newest whole one is taken.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
"""Written last by the Trainer: a checkpoint without a readable one was cut."""
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")
STATE = re.compile(r"(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth|trainer_state\.json)")
"""The Trainer's own state in a checkpoint; the rest is what ``save_model`` writes (the adapter and tokenizer)."""


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run starts: a whole checkpoint (or none), and the newer ones that were not whole."""

    checkpoint: Path | None
    step: int
    skipped: tuple[tuple[str, str], ...] = ()
    """(folder name, why it cannot be used), newest first."""
    max_steps: int | None = None
    """The run's length as the checkpoint's trainer state saved it."""

    @property
    def finished(self) -> bool:
        """The checkpoint holds every step (a kill came while the final adapter was saved): nothing to train."""
        return self.max_steps is not None and self.step >= self.max_steps

    def note(self, last_step: int) -> str:
        """What a user must be told before training continues: nothing is reset silently."""
        skipped = "; ".join(f"{name} is incomplete ({why}), so it was removed" for name, why in self.skipped)
        if self.checkpoint is None:
            start = (f"no {'whole ' if self.skipped else ''}checkpoint yet: starting again from step 0"
                     + (f" (the run had reached step {last_step})" if last_step else ""))
        else:
            start = f"resuming from {self.checkpoint.name} at step {self.step}"
            if last_step > self.step:
                again = (f"step {last_step} is" if last_step == self.step + 1
                         else f"steps {self.step + 1}-{last_step} are")
                start += f" (the run had reached step {last_step}; {again} trained again)"
        return f"{skipped}; {start}" if skipped else start


def numbered(folder: Path) -> list[tuple[int, Path]]:
    """The ``checkpoint-N`` folders in ``folder``, newest (highest N) first."""
    found = [(int(p.name[len(PREFIX):]), p) for p in folder.glob(f"{PREFIX}*")
             if p.is_dir() and p.name[len(PREFIX):].isdigit()]
    return sorted(found, reverse=True)


def resume_point(folder: Path) -> ResumePoint:
    """The newest whole checkpoint in ``folder``, and each newer one that is not."""
    skipped = []
    for step, path in numbered(folder):
        state, why = _checked(path, step)
        if why is None:
            max_steps = state.get("max_steps")
            return ResumePoint(path, step, tuple(skipped), max_steps if isinstance(max_steps, int) else None)
        skipped.append((path.name, why))
    return ResumePoint(None, 0, tuple(skipped))


def _checked(path: Path, step: int) -> tuple[dict, str | None]:
    """The trainer state ``path`` holds (read once), and why it is not a whole checkpoint of ``step`` (None: it is)."""
    try:
        saved = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"no {STATE_FILE}: the save was cut before its end"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {}, f"{STATE_FILE} is unreadable ({e})"
    if not isinstance(saved, dict) or saved.get("global_step") != step:
        return {}, f"{STATE_FILE} does not say step {step}"
    if not any((path / name).is_file() for name in WEIGHTS):
        return saved, "no weights"
    for file in sorted(path.iterdir()):
        why = None if file.name == STATE_FILE else _file_problem(file)
        if why:
            return saved, f"{file.name} {why}"
    return saved, None


def _file_problem(file: Path) -> str | None:
    if file.suffix == ".safetensors":
        return _safetensors_problem(file)
    if file.suffix in (".pt", ".pth", ".bin"):
        return None if _zip_whole(file) else "is cut short (not a whole torch file)"
    if file.suffix == ".json":
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "is not valid JSON"
    return None


def _zip_whole(file: Path) -> bool:
    """Every member's data lies inside the file (torch.save writes a zip; a cut one loses its directory or data)."""
    try:
        with zipfile.ZipFile(file) as z:
            size = file.stat().st_size
            return all(info.header_offset + info.compress_size <= size for info in z.infolist())
    except (OSError, zipfile.BadZipFile):
        return False


def _safetensors_problem(file: Path) -> str | None:
    """The header parses and its tensors end where the file ends."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if 8 + length > size:
                return "is cut short (header)"
            header = json.loads(f.read(length))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError):
        return "is cut short (header)"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"
            if isinstance(t, dict) and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2]
    return None if 8 + length + max(ends, default=0) == size else "is cut short (tensor data)"
