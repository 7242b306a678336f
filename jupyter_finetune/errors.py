"""The errors a user can fix: one base class below every layer, so a front end catches one thing.

Every layer (runs/ included) may import this module; it imports nothing of the package. Each class
also keeps the builtin it replaced (``ValueError``, ``FileNotFoundError``, ...) as a base, so
``except ValueError`` written against earlier versions still catches it. A magic turns a
``FinetuneError`` into a ``UsageError`` (the message, no traceback), and so an ``OSError`` that
``path_problem`` can word (a read-only folder, a full disk, a file in the way); any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class FinetuneError(Exception):
    """Something the user asked for cannot be done as asked; the message says what to do instead."""


class InvalidValue(FinetuneError, ValueError):
    """A value the user gave (a name, a fraction, a metric, a threshold, ...) cannot be used."""


class NotFound(FinetuneError, FileNotFoundError):
    """A file, run, sample or adapter the user named does not exist (yet)."""


class UnsupportedType(FinetuneError, TypeError):
    """An object of a type this operation does not read."""


class PathProblem(FinetuneError, OSError):
    """A file or folder cannot be read or written as asked: permissions, a read-only or full disk, a file in
    the way. Worded ``<path>: <what happened> — <fix>``."""


_CAUSES: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "change its permissions, or choose another path"),
    errno.EPERM: ("operation not permitted", "change its permissions, or choose another path"),
    errno.EROFS: ("read-only file system", "choose a folder on a writable disk"),
    errno.ENOSPC: ("no space left on the device", "free some space, or choose a folder on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or choose a folder on another disk"),
    errno.ENOTDIR: ("a file is in the way", "move that file, or choose another path"),
    errno.EEXIST: ("already exists", "move it away, or choose another path"),
    errno.EISDIR: ("a folder, not a file", "give the path of a file"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
}
"""The OSErrors a user can fix, by errno: what happened, and the fix when nothing more specific is known."""
_IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR)
"""Causes where the path the operation tripped on is worth naming beside the one the user gave."""


def path_problem(exc: BaseException, *, path: str | Path | None = None, action: str | None = None,
                 option: str | None = None) -> PathProblem | None:
    """``exc`` worded for the user, or None when it is not an OSError naming a path with a cause in ``_CAUSES``.

    ``path`` is the one the user gave (the run store, an --out folder; default the one that failed),
    ``action`` what was being done there, ``option`` where the user chooses another path (``--out``).
    """
    if not isinstance(exc, OSError) or exc.filename is None or exc.errno not in _CAUSES:
        return None
    cause = exc.errno
    if cause == errno.EEXIST and not Path(exc.filename).is_dir():  # mkdir, where a file has the folder's name
        cause = errno.ENOTDIR
    what, fix = _CAUSES[cause]
    failed = Path(exc.filename) if cause != errno.ENOTDIR else _file_in_the_way(Path(exc.filename))
    if cause in _IN_THE_WAY and path is not None and Path(path) != failed:
        what = f"{what}: {failed}"
    happened = f"{action} ({what})" if action else what
    return PathProblem(f"{path or exc.filename}: {happened} — {fix}{f' ({option})' if option else ''}")


@contextmanager
def reworded(path: str | Path, action: str, option: str | None = None) -> Iterator[None]:
    """An OSError of the block that ``path_problem`` can word, raised as that PathProblem: naming ``path`` when
    it failed there (inside ``path``'s folder or on the way to it), else naming the path that failed."""
    try:
        yield
    except OSError as exc:
        here = any(name is not None and _related(Path(name), Path(path).parent)
                   for name in (exc.filename, exc.filename2))  # a copy's source, its destination
        problem = path_problem(exc, path=path, action=action, option=option) if here else path_problem(exc)
        if problem is None:
            raise
        raise problem from None


def _related(a: Path, b: Path) -> bool:
    """One path is the other or inside it."""
    a, b = Path(os.path.abspath(a)), Path(os.path.abspath(b))
    return a.is_relative_to(b) or b.is_relative_to(a)


def _file_in_the_way(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` that is not a folder (why a NotADirectoryError was raised)."""
    for parent in (path, *path.parents):
        if parent.exists() or parent.is_symlink():
            return parent if not parent.is_dir() else path
    return path
