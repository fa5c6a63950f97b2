#!/usr/bin/env bash
# Domain FID and recognisable-digit share against network calls for every sampler, on one MNIST
# checkpoint of experiment=samplers_vs_steps (= mnist_fast): table, plot and sample grids into
# experiments/samplers_vs_steps/. About 10 minutes on the 2-core dev machine (500 samples per row).
#   experiments/samplers_vs_steps/run.sh <run>/checkpoints/last.ckpt [MNIST root]
# (ddim pinned to spacing=time, the default when these figures were measured; it is logsnr now.)
set -euo pipefail
CKPT=${1:?checkpoint of an experiment=samplers_vs_steps (or mnist_fast) run}
ROOT=${2:-../shared/datasets}
"${PYTHON:-.venv/bin/python}" experiments/samplers/compare.py --ckpt "$CKPT" --data-root "$ROOT" \
  --metrics fid digits --extractor domain --num-samples 500 --seed 1234 \
  --out "${OUT:-experiments/samplers_vs_steps}" \
  --configs ddpm:10 ddpm:20 ddpm:50 ddpm:100 ddim:10,spacing=time ddim:20,spacing=time ddim:50,spacing=time ddim:100,spacing=time strided \
            dpm_solver:10 dpm_solver:20 dpm_solver_sde:10 dpm_solver_sde:20 dpm_solver_sde:50 ode:10 ode:20
