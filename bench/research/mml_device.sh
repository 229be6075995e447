#!/bin/bash
# The issue-4 grids on a 16-core machine (one thread per cell), results (json/csv) to $OUT.
# Data in runs/mml-data (carried); python3 there holds torch, numpy, scipy, pandas, safetensors.
export PYTHONPATH=src PYTHONUNBUFFERED=1
nproc; python3 -c "import torch; print(torch.__version__)"
timeout ${LIMIT:-360} python3 bench/research/parallel_cells.py configs/grid-mml-ml1m-simplex.toml \
  configs/grid-mml-ml1m-mf.toml configs/grid-mml-amazon-cds-mf.toml configs/grid-mml-amazon-cds-simplex.toml \
  --workers 16 --data-dir runs/mml-data 2>&1 | tee $OUT/device.log
files=$(for d in runs/mml-*/cells/*; do [ -f "$d/metrics.json" ] && echo "$d/metrics.json $d/config.json $d/history.csv"; done)
tar czf $OUT/cells.tgz $files && echo "returned $(echo $files | wc -w) files"
