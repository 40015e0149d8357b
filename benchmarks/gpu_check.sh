#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): on a machine with one NVIDIA GPU, from the repository root, in about
# 11 minutes on an H200 (estimated from its first run). Writes gpu_check.json and gpu_check.md to OUTPUT_DIR
# (default .cache/gpu_check). Further arguments go to gpu_check.py, e.g. two shorter calls:
#   bash benchmarks/gpu_check.sh OUT1 --parts tests,b16,serving; bash benchmarks/gpu_check.sh OUT2 --parts l14
# $PYTHON (default python3) must hold torch with CUDA, transformers>=5, peft 0.21, accelerate, datasets, safetensors,
# huggingface_hub and pytest; the package itself is used from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" benchmarks/gpu_check.py --output "${1:-.cache/gpu_check}" "${@:2}"
