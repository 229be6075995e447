#!/usr/bin/env bash
# GPU benchmark of issue 13, in one run of at most 8 minutes on one H100 or H200 with 16 CPU
# cores: the GPU tests, then epoch and evaluation times of CML uniform and 2-stage, MF + MML with
# 800 shared negatives, two-tower in-batch and memory bank on movielens-1m-lcfn, amazon-book-kgat
# and a synthetic power-law catalogue (1M items, 50M interactions), GPU against the CPU cores in
# the same run, and ML-1M test metrics trained on each (bench/gpu_bench.py). Writes
# $OUT/gpu_results.md (+ .json) and $OUT/gpu_tests.txt when OUT is set, else runs/gpu/.
#
#   bench/gpu.sh                 # on the GPU machine
#   bench/gpu.sh --cpu-smoke     # here: small sizes, the CPU standing in for the GPU
#
# The GPU machine has torch and numpy but not negspace or the data: this runs from src/ and
# reads the datasets from $NEGSPACE_DATA, else ./.gpudata (copy movielens-1m-lcfn and
# amazon-book-kgat there, 4.7 MB, list .gpudata/ in .git/info/exclude and carry it).
set -u
cd "$(dirname "$0")/.."
SMOKE=""
[ "${1:-}" = "--cpu-smoke" ] && SMOKE="--cpu-smoke"
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUTDIR=${OUT:-runs/gpu}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -z "${NEGSPACE_DATA:-}" ]; then
    [ -d .gpudata ] || { echo "set NEGSPACE_DATA, or copy the datasets to .gpudata" >&2; exit 2; }
    export NEGSPACE_DATA="$PWD/.gpudata"
fi
T0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, numba; print('torch', torch.__version__, '| cuda', torch.version.cuda, '| numba', numba.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
echo "== GPU tests (skipped without CUDA)"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/training/test_device.py \
    tests/samplers/test_device_samplers.py 2>&1 | tail -25 | tee "$OUTDIR/gpu_tests.txt"
echo "== benchmark"
LEFT=$(( 450 - ($(date +%s) - T0) ))  # the whole script within 8 minutes, with a margin
# a real run also writes records ($OUT/gpu.jsonl: copy its lines into bench/records/gpu.jsonl)
RECORD=""; [ -z "$SMOKE" ] && RECORD="--record gpu --records-dir $OUTDIR"
timeout $(( LEFT > 60 ? LEFT : 60 )) $PY bench/gpu_bench.py $SMOKE $RECORD --budget-s $(( LEFT > 120 ? LEFT - 90 : 30 )) \
    --out "$OUTDIR/gpu_results.md"
echo "== done in $(( $(date +%s) - T0 )) s; results in $OUTDIR"
