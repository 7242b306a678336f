"""Sample data sets shipped in the wheel, so a first notebook (Colab, Kaggle) runs before the user has data."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ...errors import NotFound


def sample_path(name: str) -> Path:
    """The JSONL file of sample ``name``: ``tickets`` (240 support tickets triaged into JSON) or
    ``ticket_preferences`` (160 of them as preference pairs: the concise, correct JSON over a verbose or wrong
    answer)."""
    path = Path(str(files(__package__).joinpath(f"{name}.jsonl")))
    if not path.is_file():
        known = sorted(p.name.removesuffix(".jsonl") for p in path.parent.glob("*.jsonl"))
        raise NotFound(f"no sample data set {name!r}: the package ships {', '.join(known)}")
    return path
