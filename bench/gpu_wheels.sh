#!/usr/bin/env bash
# The small wheels bench/gpu.sh needs on a lent GPU machine that has torch, transformers,
# accelerate and peft but no internet: downloaded here (--no-deps, the exact versions this
# project pins) into .cache/gpu-wheels, to be carried there (at most 64 MiB per call).
#
#   bash bench/gpu_wheels.sh                      # for this machine's Python
#   PY_VERSION=3.12 bash bench/gpu_wheels.sh      # for another Python on the GPU machine
#   EXTRA="pyarrow==21.0.0" bash bench/gpu_wheels.sh   # add what gpu.sh reported missing there
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${DEST:-.cache/gpu-wheels}
PY=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
installed() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null; }
# trl, datasets and pandera with the dependencies the machine's image lacks (pydantic for pandera;
# dill and multiprocess for datasets), and transformers at the project's version, so the GPU run
# trains with the same code as the CPU one. The image has torch, accelerate, peft, tokenizers,
# huggingface_hub, pyarrow, pandas, xxhash, fsspec, typing_inspect (the device notes' KINDS.md).
PKGS=(trl datasets pandera typeguard dill multiprocess pydantic pydantic_core typing_inspection annotated_types transformers)
specs=()
for p in "${PKGS[@]}"; do
  v=$(installed "$p" || true)
  specs+=("$p${v:+==$v}")
done
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --dest "$DEST" "${specs[@]}" ${EXTRA:-}
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
ls -l "$DEST"
echo "gpu_wheels.sh: $(ls "$DEST"/*.whl | wc -l) wheels, $(( total / 1048576 )) MiB in $DEST (carry limit 64 MiB)"
[ "$total" -le $(( 64 * 1048576 )) ] || { echo "over 64 MiB: carry them in two calls or drop one" >&2; exit 1; }
