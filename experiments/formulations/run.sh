#!/usr/bin/env bash
# VP (the default until 2026-12-05) against EDM at the `make train` budget (triangles, 10,000 images, 16
# epochs), each with the samplers at 19-1000 network calls (256 samples per cell, seed 1234):
# table and figure into experiments/formulations/. About 25 min per training run and 30 min per
# sampler study on the 2-core development machine.
#   experiments/formulations/run.sh [VP checkpoint] [EDM checkpoint]   (trained when not given)
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/formulations}
RUNS=${RUNS:-outputs/formulations}
VP=${1:-}
EDM=${2:-}
# The `make train` recipe these tables were measured with (conf/experiment/small_default.yaml).
RECIPE=(experiment=small_default)
if [[ -z "$VP" ]]; then "$PY" -m diffusion_lit.train "${RECIPE[@]}" hydra.run.dir="$RUNS/vp"; VP=$RUNS/vp/checkpoints/last.ckpt; fi
if [[ -z "$EDM" ]]; then
  "$PY" -m diffusion_lit.train "${RECIPE[@]}" formulation=edm hydra.run.dir="$RUNS/edm"; EDM=$RUNS/edm/checkpoints/last.ckpt
fi
# Every cell reseeds its generator with --seed, so a cell's samples do not depend on the others.
CONFIGS=(
  ddpm:100,spacing=time ddpm:100,spacing=logsnr ddim:50,spacing=logsnr
  dpm_solver:20,spacing=logsnr dpm_solver_sde:20,spacing=logsnr dpmpp_3m_sde:50
  heun:10,spacing=logsnr heun:18,spacing=logsnr heun:18,spacing=karras
  heun:18,spacing=logsnr,s_churn=40,s_tmin=0.05,s_tmax=50,s_noise=1.003
  ddpm:100,spacing=karras dpm_solver:20,spacing=karras dpm_solver_sde:20,spacing=karras euler_ancestral:100
)
# The 1000-call reference (DDPM, all steps) for the VP model only: 30 min of the study's time.
"$PY" experiments/samplers/compare.py --ckpt "$VP" --num-samples 256 --seed 1234 --out "$RUNS/study_vp" \
  --configs ddpm:1000 "${CONFIGS[@]}"
"$PY" experiments/samplers/compare.py --ckpt "$EDM" --num-samples 256 --seed 1234 --out "$RUNS/study_edm" \
  --configs "${CONFIGS[@]}"
cp "$RUNS/study_vp/results.json" "$OUT/results_vp.json"
cp "$RUNS/study_edm/results.json" "$OUT/results_edm.json"
"$PY" experiments/formulations/combine.py --studies vp="$RUNS/study_vp" edm="$RUNS/study_edm" --out "$OUT"
