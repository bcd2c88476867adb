#!/usr/bin/env bash
# The float32 side of issue 19's comparison, trained on the committed bf16 run's own pairs.
#
#   bash bench/precision_rerun.sh [DIR]     # DIR defaults to .cache/precision-fp32 (~50 min on 2 cores)
#   python bench/precision_compare.py --bf16 . --fp32 DIR
#
# Two full runs that differ only in `precision` also differ in their data: the responses stage
# samples from the base model in that precision, so the pairs differ and the comparison mixes
# sampling with arithmetic. This script holds the data fixed: it clones HEAD into DIR, checks the
# committed run's outputs out of this checkout's DVC cache, sets `precision: fp32`, and re-runs
# only the stages after the pairs (sft, dpo, every evaluate@MODEL, report) with
# `dvc repro --single-item`, so both runs read the same bytes of data/preferences.parquet.
# base_ica's scores then differ by evaluation precision alone; sft's and dpo's by training and
# evaluation precision. Stage times go to DIR/stage_times.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${1:-.cache/precision-fp32}

if [ -n "$(git status --porcelain -- dvc.yaml dvc.lock params.yaml)" ]; then
  echo "bench/precision_rerun.sh: commit dvc.yaml, dvc.lock and params.yaml first (the clone takes HEAD)" >&2
  exit 2
fi
rm -rf "$DIR"
git clone -q "$ROOT" "$DIR"
cd "$DIR"
dvc cache dir --local "$ROOT/.dvc/cache"   # the committed run's outputs, without copying them
dvc checkout -q
dvc status -q || { echo "bench/precision_rerun.sh: the committed run is not in the DVC cache" >&2; exit 2; }

# Only the top-level key changes; every section (and its seeds) stays the committed run's.
sed -i 's/^precision: [a-z0-9]*/precision: fp32/' params.yaml
grep -q '^precision: fp32' params.yaml

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # this clone's code, whatever the install points to
models=$(python -c "import yaml; print(' '.join(yaml.safe_load(open('params.yaml'))['evaluate']['models']))")
printf 'stage\tseconds\n' > stage_times.tsv
for stage in sft dpo $(for m in $models; do echo "evaluate@$m"; done) report; do
  start=$(date +%s)
  dvc repro --single-item "$stage"
  printf '%s\t%s\n' "$stage" $(( $(date +%s) - start )) >> stage_times.tsv
done
cat stage_times.tsv
