"""The checks of .ci/platform.sh, on pip's own records: `pip install --report` JSON and `pip freeze`.

    preinstalled CONSTRAINTS RESOLVE...  the platform's pins among the packages the resolves install
    unchanged BEFORE AFTER             fail, naming each package pip replaced or removed
    gpu-line REPORT FREEZE             what the unsloth extra would replace; fail if it is torch

Standard library only: it runs in the platform's venv before anything of ours is installed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

KEPT_BY_GPU_LINE = ("torch",)  # the platform's CUDA build: replacing it breaks the runtime until a restart


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def versions(freeze: Path) -> dict[str, str]:
    """``pip freeze`` or a constraints file: exact pins by canonical name (comments, URLs skipped)."""
    pinned = {}
    for line in freeze.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and " @ " not in line:
            name, version = line.split("==", 1)
            pinned[canonical(name.split("[")[0])] = version.strip()
    return pinned


def installs(report: Path) -> dict[str, str]:
    """What a ``pip install --report`` run installed (or would, with --dry-run)."""
    items = json.loads(report.read_text())["install"]
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def preinstalled(constraints: Path, *resolves: Path) -> int:
    pins = versions(constraints)
    for name in sorted(set().union(*map(installs, resolves)) & set(pins)):
        print(f"{name}=={pins[name]}")
    return 0


def unchanged(before: Path, after: Path) -> int:
    old, new = versions(before), versions(after)
    changed = [f"pip replaced {n} {old[n]} with {new[n]}" if n in new else f"pip removed {n} {old[n]}"
               for n in sorted(old) if new.get(n) != old[n]]
    added = sorted(f"{n}=={new[n]}" for n in set(new) - set(old))
    print(f"{len(old)} packages of the platform kept; added {len(added)}: {', '.join(added) or 'none'}")
    for line in changed:
        print(line, file=sys.stderr)
    return 1 if changed else 0


def gpu_line(report: Path, freeze: Path) -> int:
    installed = versions(freeze)
    replaced = {n: v for n, v in installs(report).items() if n in installed and installed[n] != v}
    for name, version in sorted(replaced.items()):
        print(f"the unsloth extra replaces {name} {installed[name]} with {version}")
    if not replaced:
        print("the unsloth extra replaces nothing the platform installed")
    kept = [n for n in KEPT_BY_GPU_LINE if n in replaced]
    for name in kept:
        print(f"the unsloth extra must keep the platform's {name} {installed[name]}", file=sys.stderr)
    return 1 if kept else 0


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    checks = {"preinstalled": preinstalled, "unchanged": unchanged, "gpu-line": gpu_line}
    sys.exit(checks[command](*map(Path, paths)))
