"""Build the JupyterLab extension into jupyter_finetune/labextension/, once per version of its sources.

A build (``npm ci``, ``tsc``, ``jupyter labextension build``) takes about a minute on 2 cores, so
``make install`` must not repeat it for every fresh clone: the output is kept in
``${XDG_CACHE_HOME:-~/.cache}/jupyter-finetune/labextension-<hash>/``, where the hash covers every
file the build reads (package.json, package-lock.json, tsconfig.json, src/, style/ and this
script). Unchanged sources copy that folder back in well under a second; any change builds anew.

Usage: ``python labextension/build.py [--force]``, with the Python that has jupyterlab installed
(its ``jupyter`` runs the builder); ``--force`` rebuilds even when the cache has this version.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent / "jupyter_finetune" / "labextension"
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "build.py", "src", "style")


def source_files() -> list[Path]:
    files = []
    for name in SOURCES:
        path = HERE / name
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def source_hash() -> str:
    """SHA-256 over each source's relative path and bytes, length-prefixed so no two layouts collide."""
    digest = hashlib.sha256()
    for path in source_files():
        for part in (path.relative_to(HERE).as_posix().encode(), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "jupyter-finetune" / f"labextension-{source_hash()}"


def build(npm: str) -> None:
    """npm ci from the lock file, then the package's build:prod script (tsc + jupyter labextension build)."""
    bin_dir = str(Path(sys.executable).parent)  # this venv's `jupyter`, which npm's script calls
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    if shutil.which("jupyter-labextension", path=env["PATH"]) is None:
        sys.exit(f"labextension: jupyterlab is not installed for {sys.executable}; pip install 'jupyterlab>=4,<5'")
    shutil.rmtree(OUTPUT, ignore_errors=True)
    shutil.rmtree(HERE / "lib", ignore_errors=True)
    for command in (["ci", "--no-audit", "--no-fund", "--ignore-scripts"], ["run", "build:prod"]):
        if subprocess.run([npm, *command], cwd=HERE, env=env).returncode != 0:
            sys.exit(f"labextension: `npm {' '.join(command)}` failed (its output is above)")


def store(cached: Path) -> None:
    """Copy the output into the cache under a temporary name, then rename: readers never see half a build."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}")
    shutil.copytree(OUTPUT, partial)
    try:
        partial.rename(cached)
    except OSError:  # a concurrent build stored the same version first
        shutil.rmtree(partial)


def restore(cached: Path) -> None:
    shutil.rmtree(OUTPUT, ignore_errors=True)
    shutil.copytree(cached, OUTPUT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache has these sources")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cached = cache_dir()
    if cached.is_dir() and not args.force:
        restore(cached)
        print(f"labextension: cached build {cached} -> {OUTPUT} in {time.perf_counter() - start:.1f} s")
        return
    npm = shutil.which("npm")
    if npm is None:  # the Python package works without the sidebar; its browser and wheel tests skip
        print("labextension: npm not found, so the JupyterLab extension is not built; install Node.js 20+, "
              "run this again, then `pip install -e .`")
        return
    build(npm)
    if args.force:
        shutil.rmtree(cached, ignore_errors=True)
    store(cached)
    print(f"labextension: built {OUTPUT} in {time.perf_counter() - start:.1f} s, cached in {cached}")


if __name__ == "__main__":
    main()
