#!/usr/bin/env bash
# Issue 25's study: diffusion on photon counts. For each rate lambda (photons at full intensity), the
# count process (formulation=blackout, tau-leaping with 100 network calls) and the Gaussian DDPM
# (formulation=vp, ddpm_fast: 100 calls, samples rounded to counts) trained on the same count
# triangles with the same budget (EPOCHS epochs of the 9,000 training images, batch 64), then each
# one's bound on 256 validation count images (100 network calls per image: the count bound's strata,
# the Gaussian bound's random timesteps), then the table and figures (summarize.py).
#   experiments/count_diffusion/run.sh          # RATES="5 20 100" EPOCHS=16 by default
# Finished runs are skipped. TRAIN_ARGS: extra train overrides for every run (e.g. trainer=gpu).
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/count_diffusion}
RUNS=${RUNS:-outputs/count_diffusion}
EPOCHS=${EPOCHS:-16}
# The `make train` recipe these tables were measured with (conf/experiment/small_default.yaml).
RECIPE=(experiment=small_default)
read -ra TRAIN_ARGS <<<"${TRAIN_ARGS:-}"
for rate in ${RATES:-5 20 100}; do
  for formulation in blackout vp; do
    run=$RUNS/${formulation}_lambda$rate
    [[ -f $run/results.json ]] || "$PY" -m diffusion_lit.train "${RECIPE[@]}" formulation="$formulation" data.counts.lambda="$rate" \
      trainer.max_epochs="$EPOCHS" "${TRAIN_ARGS[@]}" hydra.run.dir="$run"
    [[ -f $run/nll.json ]] || "$PY" -m diffusion_lit.evaluate ckpt="$run/checkpoints/last.ckpt" metrics=nll \
      num_images=256 nll.timesteps=100 out="$run/nll.json" hydra.run.dir="$run/nll"
  done
done
[[ -n ${NO_SUMMARY:-} ]] || "$PY" experiments/count_diffusion/summarize.py --runs "$RUNS" --out "$OUT"
