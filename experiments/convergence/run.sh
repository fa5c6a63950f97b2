#!/usr/bin/env bash
# Convergence per training image on triangles: one run per setting, one after another, each
# stopping once >= 90% of 256 samples are valid triangles (experiment=triangles_convergence),
# then the table and plot (table.py). About 5-12 minutes per run on the 2-core dev machine.
#   experiments/convergence/run.sh [RUNS_DIR]     (default: runs/convergence)
set -euo pipefail
out=${1:-runs/convergence}
python=${PYTHON:-python}
run() {
  local name=$1
  shift
  [ -f "$out/$name/results.json" ] && return  # finished before: rerun by deleting its folder
  "$python" -m diffusion_lit.train experiment=triangles_convergence "$@" callbacks.progress_bar=null hydra.run.dir="$out/$name"
}
run a_defaults
run b_x0_min_snr model.prediction=x0 model.weighting=min_snr   # the target + weighting MNIST's sweep chose
run c_prediction_v model.prediction=v
run d_ema_0.99 callbacks.ema.decay=0.99
run e_lr_cosine lr_decay=cosine
"$python" experiments/convergence/table.py "$out"
