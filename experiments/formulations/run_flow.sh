#!/usr/bin/env bash
# Issue 27's formulation study on triangles at the `make train` budget (10,000 images, 16 epochs):
# VP (today's default), EDM, rectified flow with uniform and logit-normal training times, logit-normal
# with minibatch OT, and one reflow of the logit-normal flow (5,000 pairs by flow_midpoint 10 steps,
# then 4 epochs from its weights: 19,000 more images). Each model with the same sampler
# configurations at 1-100 network calls (256 samples per cell, seed 1234), then the best per
# budget: table and figure into
# experiments/formulations/flow/. Checkpoints given as VP=... EDM=... (env) are not retrained.
# About 30 min per training run, 5 min per model's sampler study on the 2-core development machine.
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/formulations/flow}
RUNS=${RUNS:-outputs/flow}
train() {  # name, overrides...: trains into $RUNS/<name> unless its checkpoint is there
  local name=$1; shift
  [[ -f "$RUNS/$name/checkpoints/last.ckpt" ]] || "$PY" -m diffusion_lit.train "$@" hydra.run.dir="$RUNS/$name"
}
VP=${VP:-$RUNS/vp/checkpoints/last.ckpt}
EDM=${EDM:-$RUNS/edm/checkpoints/last.ckpt}
[[ -f "$VP" ]] || { train vp; VP=$RUNS/vp/checkpoints/last.ckpt; }
[[ -f "$EDM" ]] || { train edm formulation=edm; EDM=$RUNS/edm/checkpoints/last.ckpt; }
train flow_uniform formulation=flow formulation.time_distribution=uniform
train flow_logit_normal formulation=flow
train flow_logit_normal_ot formulation=flow formulation.coupling=ot
LN=$RUNS/flow_logit_normal/checkpoints/last.ckpt
[[ -f "$RUNS/pairs_logit_normal.pt" ]] || "$PY" -m diffusion_lit.reflow ckpt="$LN" num_pairs=5000 out="$RUNS/pairs_logit_normal.pt"
train reflow_logit_normal formulation=flow data=reflow_pairs data.path="$RUNS/pairs_logit_normal.pt" init_weights="$LN" \
  trainer.max_epochs=4
# The same configurations for every model (each reseeds with --seed): Euler (= DDIM) and the
# 2nd-order flow steps at the configs' shifts (0.3, 0.5), even in t (shift 1) and at SD3's shift 3,
# DPM-Solver++(2M) on log-SNR spacing, and the stochastic samplers (DDPM 100 as `ddpm_fast`, the
# flow SDE, SDE-DPM-Solver++).
FEW=(flow_euler:1 flow_euler:2 flow_euler:4 flow_euler:8 flow_euler:16 flow_euler:35
     flow_euler:2,shift=1.0 flow_euler:4,shift=1.0 flow_euler:8,shift=1.0 flow_euler:16,shift=1.0
     flow_midpoint:1 flow_midpoint:2 flow_midpoint:4 flow_midpoint:8 flow_heun:18
     dpm_solver:2 dpm_solver:4 dpm_solver:8 dpm_solver:16 dpm_solver:35
     flow_euler:2,shift=3.0 flow_euler:4,shift=3.0 flow_euler:8,shift=3.0 flow_euler:16,shift=3.0
     flow_midpoint:1,shift=1.0 flow_midpoint:2,shift=1.0 flow_midpoint:4,shift=1.0 flow_midpoint:8,shift=1.0
     flow_midpoint:1,shift=3.0 flow_midpoint:2,shift=3.0 flow_midpoint:4,shift=3.0
     ddpm:100,spacing=logsnr flow_sde:4 flow_sde:8 flow_sde:16 flow_sde:35 flow_sde:100
     dpm_solver_sde:8 dpm_solver_sde:16 dpm_solver_sde:20)
study() {  # name, checkpoint, extra configurations...
  local name=$1 ckpt=$2; shift 2
  [[ -f "$RUNS/study_$name/results.json" ]] || "$PY" experiments/samplers/compare.py --ckpt "$ckpt" --num-samples 256 \
    --seed 1234 --out "$RUNS/study_$name" --configs "${FEW[@]}" "$@"
  cp "$RUNS/study_$name/results.json" "$OUT/results_$name.json"
}
mkdir -p "$OUT"
study vp "$VP" flow_euler:100
study edm "$EDM" flow_euler:100
study flow_uniform "$RUNS/flow_uniform/checkpoints/last.ckpt" flow_euler:100 flow_adaptive
study flow_logit_normal "$LN" flow_euler:100 flow_adaptive
study flow_logit_normal_ot "$RUNS/flow_logit_normal_ot/checkpoints/last.ckpt" flow_euler:100 flow_adaptive
study reflow_logit_normal "$RUNS/reflow_logit_normal/checkpoints/last.ckpt" flow_euler:100 flow_adaptive
# VP and EDM also with issue 23's study of the same checkpoints (19-1000 calls, same protocol).
"$PY" experiments/formulations/best_per_budget.py --out "$OUT" \
  --studies vp="$RUNS/study_vp+experiments/formulations/results_vp.json" \
  edm="$RUNS/study_edm+experiments/formulations/results_edm.json" \
  flow_uniform="$RUNS/study_flow_uniform" flow_logit_normal="$RUNS/study_flow_logit_normal" \
  flow_logit_normal_ot="$RUNS/study_flow_logit_normal_ot" reflow_logit_normal="$RUNS/study_reflow_logit_normal"
