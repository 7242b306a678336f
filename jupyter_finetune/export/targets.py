"""Where an export goes, and why an existing one is never silently replaced.

An export is written into a hidden sibling folder and renamed into place when complete, so a
killed kernel leaves either the old export or the new one, never half of one. Folders we write
carry ``export.json``; --overwrite replaces only such a folder (or an empty one), so a mistyped
--out can never delete someone's files.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import FinetuneError, reworded
from ..runs import Run
from .result import ExportedFile, ExportExists

FULL = 16 * 2**20
"""Free bytes below which a failed export is taken for a full disk: safetensors and numpy say so in their own
words ("I/O error: No space left on device", "62400 requested and 6608 written"), without an errno."""
MARKER = "export.json"
"""Written inside every export folder (which may lie outside the run): what wrote it, and when."""


def target_path(run: Run, kind: str, quant: str, out: str | Path | None) -> Path:
    """The run's own folder for ``kind`` or ``out``, absolute; a gguf export is one file inside that folder.

    Absolute, so that the recorded paths and the printed ``ollama create`` command work from anywhere.
    """
    folder = (run.export_dir(kind) if out is None else Path(out).expanduser()).resolve()
    return folder / gguf_name(run.name, quant) if kind == "gguf" else folder


def gguf_name(run: str, quant: str) -> str:
    return f"{run}-{quant}.gguf"


def claim(target: Path, overwrite: bool) -> None:
    """Refuse an existing target unless --overwrite, and even then one that an export did not write.

    Replaceable: a folder holding our ``export.json``, an empty folder, or a .gguf file.
    """
    if not target.exists():
        return
    if not overwrite:
        raise ExportExists(f"{target} already exists: pass --overwrite (overwrite=True) to replace it, "
                           "or --out another folder")
    if target.is_dir():
        ours = (target / MARKER).is_file() or not any(target.iterdir())
    else:
        ours = target.suffix == ".gguf"
    if not ours:
        raise ExportExists(f"{target} was not written by %ft_export, so --overwrite will not delete it: "
                           "give --out a new or empty folder")


@contextmanager
def staging(target: Path) -> Iterator[Path]:
    """An empty hidden folder next to ``target``, removed afterwards whatever happens; an OSError the user can
    fix (a read-only or full disk) names ``target`` and --out.

    Made by mkdir, not mkdtemp, so that it has the user's umask (drwxr-xr-x) and not drwx------: the
    export is renamed from it, and an ollama or llama.cpp service account must be able to read it.
    """
    with reworded(target, "cannot write the export here", "--out"):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            yield tmp
        except Exception as exc:
            if isinstance(exc, FinetuneError) or shutil.disk_usage(tmp).free > FULL:
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def publish(written: Path, target: Path) -> None:
    """Move a finished file or folder of the staging folder into place, replacing an old export of the same target.

    Everything in it first gets the modes the user's umask gives new files and folders (read from the staging
    folder, which mkdir made): writers such as safetensors make their files 0o600, which a service account
    reading the export (ollama, llama.cpp) cannot open.
    """
    staged = written if written.is_dir() else written.parent
    folder_mode = stat.S_IMODE(staged.stat().st_mode)
    for path in (written, *written.rglob("*")):
        path.chmod(folder_mode if path.is_dir() else folder_mode & 0o666)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.replace(written, target)


def listing(path: Path) -> tuple[ExportedFile, ...]:
    """Every file of an export (a folder's, recursively) with its size."""
    if path.is_file():
        return (ExportedFile(path.name, path.stat().st_size),)
    return tuple(ExportedFile(p.relative_to(path).as_posix(), p.stat().st_size)
                 for p in sorted(path.rglob("*")) if p.is_file() and p.name != MARKER)
