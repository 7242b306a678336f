"""Deterministic train/test split that keeps near-duplicates on the same side."""

from __future__ import annotations

import hashlib

from ..errors import InvalidValue


def split_indices(keys: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of train and test rows.

    Rows are grouped by their near-duplicate key and groups are ranked by a seeded stable hash,
    so the split does not depend on row order or on the Python process, and copies of one
    example never straddle the split.
    """
    if not 0 <= fraction < 1:
        raise InvalidValue(f"--split must be a fraction in [0, 1) or a test file, got {fraction}")
    n = len(keys)
    want = round(n * fraction)
    if fraction > 0 and n >= 2:
        want = max(want, 1)
    if want == 0:
        return list(range(n)), []
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    salt = f"{seed}\x00".encode()
    ranked = sorted(groups, key=lambda k: hashlib.blake2b(salt + k.encode(), digest_size=8).digest())
    test: list[int] = []
    for key in ranked:
        if len(test) >= want:
            break
        test.extend(groups[key])
    test_set = set(test)
    return [i for i in range(n) if i not in test_set], sorted(test)
