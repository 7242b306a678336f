"""A run's files are read only where they lie inside its folder: a link that leads out is damage, never followed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .damage import DamagedRun, Malformed


class LeadsOutside(DamagedRun):
    """A file of the run, or a folder on its way, is a link to somewhere outside the run."""


def unreadable(run_dir: Path, name: str, error: OSError) -> DamagedRun:
    return DamagedRun(run_dir, name, f"cannot be read ({error.strerror or error})")


def stat_inside(run_dir: Path, name: str) -> os.stat_result | None:
    """The stat of ``name`` (``status.json``, ``eval/x.json``) in the run; None when it is not there.

    LeadsOutside when it, or a folder on its way, is a link that resolves outside the run: the server
    must never serve ``config.json -> /home/me/secret.json``. Plain strings and one lstat per part: the
    server calls this for every file of every run at every poll.
    """
    path = str(run_dir)
    try:
        for part in name.split("/"):
            path = os.path.join(path, part)
            found = os.lstat(path)
            if stat.S_ISLNK(found.st_mode):
                target, root = os.path.realpath(os.path.join(run_dir, name)), os.path.realpath(run_dir)
                if not target.startswith(os.path.join(root, "")):
                    raise LeadsOutside(run_dir, name, "links outside the run")
                return os.stat(target)
        return found
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise unreadable(run_dir, name, e) from None


def parse_json(data: bytes) -> Any:
    if not data.strip():
        raise Malformed("empty")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise Malformed("not UTF-8 text") from None
    except ValueError as e:
        raise Malformed(f"not JSON ({e})") from None
