#!/usr/bin/env bash
# CI: llama-cpp-python (real llama.cpp, the consumer of our GGUF files) into .venv, for the tests that load
# every exported family in it. PyPI ships it as source only; compiling takes minutes on 2 cores, so the wheel
# is built once per version, Python and CPU and kept outside the clone.
# Usage: .ci/llama_cpp.sh [path/to/venv]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
version=0.3.36
python=$venv/bin/python
cache="${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-finetune"
# No -march=native: on a CPU with AMX (Sapphire Rapids and later) llama.cpp then compiles its AMX kernels,
# which crash (SIGSEGV in llama_decode) on the q8_0 files of the tests' tiny models; AVX2 runs everywhere.
cmake_args="-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
key=$( (echo "$version $cmake_args"; "$python" --version; grep -m1 '^flags' /proc/cpuinfo) | sha256sum | cut -c1-16)
wheels="$cache/llama-cpp-python-$key"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "== $(date +%T) building llama-cpp-python $version (once per version, Python and CPU)"
    rm -rf "$cache/llama-cpp-python-"*.tmp
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="$cmake_args" \
        "$python" -m pip wheel -q --no-cache-dir --no-deps "llama-cpp-python==$version" -w "$wheels.tmp"
    mv "$wheels.tmp" "$wheels"
fi
"$python" -m pip install -q "$wheels"/llama_cpp_python-*.whl  # and its small pure-Python needs (diskcache)
