"""What makes a run damaged: a file of its folder that this version cannot read as written.

Reading a run is total. Each field runs/ hands out is checked where its file is parsed, and a
field of the wrong type raises ``Malformed`` with the reason (``step is "abc", not a whole
number``); the reader of the file turns it into ``DamagedRun``, which names the run, the file and
the fix. A listing shows such a run as ``damaged`` with that reason and lists the others as usual;
export and evaluation refuse it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import FinetuneError


class Malformed(ValueError):
    """A value of a run file in the wrong shape; the reason only (the file's reader knows which file)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class DamagedRun(FinetuneError):
    """A file of the run cannot be read as this version wrote it (edited by hand, cut by a sync, a link
    leading out of the run): the run is listed as ``damaged``, and nothing is done with it."""

    def __init__(self, run_dir: Path, file: str, reason: str, line: int | None = None):
        self.run, self.path, self.reason = run_dir.name, run_dir / file, reason
        self.where = f"{file} line {line}" if line else file
        super().__init__(f"run {self.run!r} is damaged: {self.damage}. Fix or delete {self.path}, or train it "
                         f"again with %ft_train ... --name {self.run} --overwrite")

    @property
    def damage(self) -> str:
        """The file and the reason, as a listing shows them: ``status.json: step is "abc", not a whole number``."""
        return f"{self.where}: {self.reason}"


def shown(value: Any) -> str:
    """A value as the file has it, cut short: ``"abc"``, ``[1, 2]``."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


WHOLE: tuple[str, Callable[[Any], bool]] = ("a whole number", _whole)
NUMBER: tuple[str, Callable[[Any], bool]] = ("a number", _number)
TEXT: tuple[str, Callable[[Any], bool]] = ("text", lambda v: isinstance(v, str))
OBJECT: tuple[str, Callable[[Any], bool]] = ("an object", lambda v: isinstance(v, dict))
LIST: tuple[str, Callable[[Any], bool]] = ("a list", lambda v: isinstance(v, list))


def check(value: Any, kind: tuple[str, Callable[[Any], bool]], what: str) -> Any:
    """``value`` if it is of ``kind``, else Malformed: ``<what> is <value>, not <kind>``."""
    name, test = kind
    if not test(value):
        raise Malformed(f"{what} is {shown(value)}, not {name}")
    return value


def whole_file(saved: Any) -> dict[str, Any]:
    """A file's top level, which is always an object."""
    if not isinstance(saved, dict):
        raise Malformed(f"holds {shown(saved)}, not an object")
    return saved


def field(saved: Mapping[str, Any], key: str, kind: tuple[str, Callable[[Any], bool]], *,
          required: bool = False) -> Any:
    """``saved[key]`` checked against ``kind``; None when it is absent or null, unless it is required."""
    value = saved.get(key)
    if value is None:
        if required:
            raise Malformed(f"{key} is missing" if key not in saved else f"{key} is null, not {kind[0]}")
        return None
    return check(value, kind, key)
