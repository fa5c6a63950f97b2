#!/usr/bin/env bash
# Every figure and number of experiments/practica_mnist/README.md from one checkpoint of
#   python -m diffusion_lit.train experiment=practica_mnist data.root=../shared/datasets
# Usage (from the repository root): experiments/practica_mnist/make_figures.sh <run>/checkpoints/last.ckpt [MNIST root]
# The run folder's csv/metrics.csv gives the loss figure.
set -euo pipefail
CKPT=${1:?checkpoint of an experiment=practica_mnist run}
ROOT=${2:-../shared/datasets}
OUT=${OUT:-experiments/practica_mnist}
PY=${PYTHON:-.venv/bin/python}
RUN=$(dirname "$(dirname "$CKPT")")

# Practical figure 2: x_t at t = 3, 10, 30, 100 and the last step (t = 200 is index 199 here).
"$PY" -m diffusion_lit.edit task=forward task.timesteps=[3,10,30,100,199] ckpt="$CKPT" data.root="$ROOT" out=$OUT/forward_noising.png
# Figure 4: x_0 from one network call at t = 50, 100, 199, with its MSE to the original.
"$PY" -m diffusion_lit.edit task=one_step task.timesteps=[50,100,199] ckpt="$CKPT" data.root="$ROOT" out=$OUT/one_step.png
# Figure 5: digits from pure noise with the practical's sampler (all 200 ancestral steps).
"$PY" -m diffusion_lit.sample ckpt="$CKPT" num_samples=64 out=$OUT/samples.png
# Scores: domain FID + recognisable-digit share on 1,000 samples, Inception FID on 500 vs 1,000 real.
"$PY" -m diffusion_lit.evaluate ckpt="$CKPT" data.root="$ROOT" metrics=[fid,digits] extractor=domain num_samples=1000 out=$OUT/scores_domain.json
"$PY" -m diffusion_lit.evaluate ckpt="$CKPT" data.root="$ROOT" metrics=[fid] extractor=inception num_samples=500 num_real=1000 out=$OUT/scores_inception.json
# Figure 3: the loss curve from the run's logged losses (every logged step, epoch means, validation).
"$PY" experiments/practica_mnist/draw_loss.py "$RUN" $OUT/loss_curve.png
