"""Write a platform's constraints file from the package set it publishes (see tests/envs/README.md).

A published freeze names builds pip cannot fetch here: CUDA local versions (``torch==2.11.0+cu128``)
become the same release from PyPI (whose Linux wheel is a CUDA build too: the CPU builds are not on PyPI),
CUDA's own libraries are left to that torch, and packages installed from a URL or a local file
(Google-internal builds, NVIDIA's index) are dropped. Requirement files layered on top of the freeze (Kaggle's) replace
its pins with their own exact pins; their ranges are kept as comments, since the version they
resolved to is not published.

    python tests/envs/derive.py FREEZE [--on-top REQUIREMENTS] [--unpin NAME ...] --source TEXT -o OUT
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

_LOCAL = re.compile(r"\+[\w.]+$")
# CUDA's runtime libraries: PyPI's torch of a release brings the ones it was built with (2.11.0: CUDA 13,
# where Colab's +cu128 build has 12.8), and no GPU here loads them.
_CUDA_LIBRARY = re.compile(r"^(cuda-[a-z-]+|nvidia-[a-z0-9-]+-cu\d+)$")


def pins(lines: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Exact pins by canonical name; the names installed from a URL; the other lines (ranges)."""
    pinned: dict[str, str] = {}
    urls: list[str] = []
    other: list[str] = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if " @ " in line:
            urls.append(line.split(" @ ", 1)[0].strip())
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            other.append(line)
            continue
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
            pinned[canonicalize_name(req.name)] = f"{req.name}=={_LOCAL.sub('', specs[0].version)}"
        else:
            other.append(line)
    return pinned, urls, other


def derive(freeze: str, on_top: str | None, unpin: list[str], source: str) -> str:
    pinned, dropped, _ = pins(freeze.splitlines())
    added: list[str] = []
    if on_top is not None:
        top, urls, ranges = pins(on_top.splitlines())
        pinned.update(top)
        dropped += urls
        for line in ranges:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            name = canonicalize_name(req.name)
            if name not in pinned:
                added.append(req.name)
            elif not req.specifier.contains(pinned[name].split("==")[1], prereleases=True):
                unpin = [*unpin, req.name]  # installed over the freeze at a version not published
    for name in unpin:
        pinned.pop(canonicalize_name(name), None)
    cuda = sorted(name for name in pinned if _CUDA_LIBRARY.match(name))
    for name in cuda:
        del pinned[name]
    header = [f"# {line}" if line else "#" for line in source.strip().splitlines()]
    header += ["#", "# Derived by tests/envs/derive.py: CUDA builds (+cuXXX) are PyPI's build of the same release;",
               "# packages installed from a URL are dropped: " + ", ".join(sorted(dropped)) + ";",
               "# so are CUDA's libraries, which PyPI's torch brings in the version it was built with: "
               + ", ".join(cuda) + "."]
    if on_top is not None:
        header.append(f"# Ranges layered on top keep the freeze's version where it satisfies them, as pip and uv do; "
                      f"{len(added)} packages they add are not pinned (their versions are not published).")
    if unpin:
        header.append("# Unpinned, as a pin or range layered on top needs another version: " + ", ".join(unpin) + ".")
    return "\n".join(header + sorted(pinned.values(), key=str.lower)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("freeze", type=Path)
    parser.add_argument("--on-top", type=Path, help="a requirements file installed over the freeze")
    parser.add_argument("--unpin", nargs="*", default=[])
    parser.add_argument("--source", required=True, help="where the files came from (the header)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    on_top = args.on_top.read_text() if args.on_top else None
    args.out.write_text(derive(args.freeze.read_text(), on_top, args.unpin, args.source))


if __name__ == "__main__":
    main()
