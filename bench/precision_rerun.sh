#!/usr/bin/env bash
# The float32 side of issue 19's comparison, trained on the committed bf16 run's own pairs.
#
#   bash bench/precision_rerun.sh [DIR]     # DIR defaults to .cache/precision-fp32 (~40 min on 2 cores)
#   python bench/precision_compare.py --bf16 . --fp32 DIR
#
#   bash bench/precision_rerun.sh --bf16-eval FP32_DIR DIR      # ~6 min: FP32_DIR's models, evaluated in bf16
#   python bench/precision_compare.py --bf16 . --fp32 DIR --name precision_training
#
# Two full runs that differ only in `precision` also differ in their data: the responses stage
# samples from the base model in that precision, so the pairs differ and the comparison mixes
# sampling with arithmetic. This script holds the data fixed: it clones HEAD into DIR, checks the
# committed run's outputs out of this checkout's DVC cache, sets `precision: fp32`, and re-runs
# only the stages after the pairs (sft, dpo, every evaluate@MODEL, report) with
# `dvc repro --single-item`, so both runs read the same bytes of data/preferences.parquet.
# base_ica's scores then differ by evaluation precision alone; sft's and dpo's by training and
# evaluation precision. Stage times go to DIR/stage_times.tsv.
#
# --bf16-eval FP32_DIR splits the two: it copies FP32_DIR (a finished run of the first form) to DIR
# and evaluates its fp32-trained models again under the committed precision (auto), taking the
# untrained models' evaluations (checkpoint models/base) from this checkout, where the same model
# was evaluated in the same arithmetic. Against this checkout, DIR then differs by training
# precision alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FROM=
if [ "${1:-}" = "--bf16-eval" ]; then FROM=$(cd "$2" && pwd); shift 2; fi
DIR=${1:-.cache/precision-fp32}
models_of() {  # the evaluated models of params.yaml; with "trained", only those not on models/base
  python -c "import sys, yaml; m = yaml.safe_load(open('params.yaml'))['evaluate']['models']
print(' '.join(k for k, v in m.items() if sys.argv[1] != 'trained' or v['checkpoint'] != 'models/base'))" "$1"
}
timed() {  # dvc repro --single-item STAGE, its seconds appended to stage_times.tsv
  local start=$(date +%s)
  dvc repro --single-item "$1"
  printf '%s\t%s\n' "$1" $(( $(date +%s) - start )) >> stage_times.tsv
}
use_checkout_code() {  # the checkout's own src/, whatever the editable install points to
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
}

if [ -n "$FROM" ]; then
  rm -rf "$DIR"
  cp -a "$FROM" "$DIR"
  cd "$DIR"
  use_checkout_code
  git checkout -q params.yaml   # the committed precision (auto)
  printf 'stage\tseconds\n' > stage_times.tsv
  for m in $(models_of all); do
    case " $(models_of trained) " in
      *" $m "*) timed "evaluate@$m" ;;
      *) cp "$ROOT/reports/eval/$m.parquet" "reports/eval/$m.parquet" ;;
    esac
  done
  timed report
  cat stage_times.tsv
  exit 0
fi

if [ -n "$(git status --porcelain -- dvc.yaml dvc.lock params.yaml)" ]; then
  echo "bench/precision_rerun.sh: commit dvc.yaml, dvc.lock and params.yaml first (the clone takes HEAD)" >&2
  exit 2
fi
rm -rf "$DIR"
git clone -q "$ROOT" "$DIR"
cd "$DIR"
use_checkout_code
dvc cache dir --local "$ROOT/.dvc/cache"   # the committed run's outputs, without copying them
dvc checkout -q
dvc status -q || { echo "bench/precision_rerun.sh: the committed run is not in the DVC cache" >&2; exit 2; }

# Only the top-level key changes; every section (and its seeds) stays the committed run's.
sed -i 's/^precision: [a-z0-9]*/precision: fp32/' params.yaml
grep -q '^precision: fp32' params.yaml

printf 'stage\tseconds\n' > stage_times.tsv
for stage in sft dpo $(for m in $(models_of all); do echo "evaluate@$m"; done) report; do
  timed "$stage"
done
cat stage_times.tsv
