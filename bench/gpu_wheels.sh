#!/usr/bin/env bash
# Wheels the offline GPU machine lacks for bench/bench_gpu.py, unpacked into .whl/site (git-ignored) and
# trimmed under the device tool's 64 MiB carry limit (about 51 MB): unsloth's studio/ folder goes, and so do
# the bitsandbytes builds for ROCm, XPU and CUDA versions other than 13.0 (the image's torch is cu130).
# That machine has Python 3.12 with a CUDA torch, triton, transformers 5.17 and accelerate installed.
# There: export PYTHONPATH=$PWD/.whl/site
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$wheels" \
    unsloth==2026.10.9 unsloth_zoo==2026.10.9 bitsandbytes==0.50.2 trl==1.15.0 datasets==4.8.5 dill==0.4.1 \
    multiprocess==0.70.19 torchao==0.18.0 cut_cross_entropy==25.1.1 "$@"
rm -rf .whl/site && mkdir -p .whl/site
for w in "$wheels"/*.whl; do unzip -qo "$w" -d .whl/site; done
rm -rf .whl/site/studio .whl/site/unsloth_cli .whl/site/test .whl/site/bitsandbytes/libbitsandbytes_{cuda1{18,21,24,26,28,32},rocm*,xpu*}.so "$wheels"
du -sh .whl/site
