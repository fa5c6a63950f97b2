#!/usr/bin/env bash
# Issue 27's formulation study on triangles at the `make train` budget (10,000 images, 16 epochs):
# VP (the default until 2026-12-05), EDM, rectified flow with uniform and logit-normal training times, logit-normal
# with minibatch OT, and one reflow of the logit-normal flow (5,000 pairs by flow_midpoint 10 steps,
# then 4 epochs from its weights: 19,000 more images). Each model with the same sampler
# configurations at 1-100 network calls (256 samples per cell, seed 1234), then the best per
# budget: table and figure into experiments/formulations/flow/.
#   experiments/formulations/run_flow.sh               # everything, in turn (skips what is there)
#   experiments/formulations/run_flow.sh model NAME    # one model: train it, then its sampler cells
#   experiments/formulations/run_flow.sh reflow        # the reflow of flow_logit_normal (trained if missing), its cells
# NAME: vp edm flow_uniform flow_logit_normal flow_logit_normal_ot. TRAIN_ARGS (extra train
# overrides, e.g. trainer=gpu) and STUDY_ARGS (extra compare.py options, e.g. --device cuda) carry
# over to every step; checkpoints given as VP=... EDM=... (env) are not retrained. RECIPE (words,
# default experiment=small_default) is the training recipe every model shares. The reflow: REFLOW_PAIRS
# (default 5000) pairs drawn with REFLOW_ARGS (reflow overrides; default: its sampler, flow_midpoint 10
# at shift 0.5), then REFLOW_EPOCHS (default 4) epochs from the teacher's weights.
# About 30 min per training run, 5 min per model's sampler study on the 2-core development machine.
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-experiments/formulations/flow}
RUNS=${RUNS:-outputs/flow}
# The `make train` recipe of 2026-12-04, which the tables of that day were measured with
# (conf/experiment/small_default.yaml); RECIPE="trainer.max_epochs=20" trains on
# the narrow U-Net at the 20 epochs that were the default until 2026-12-07 (RECIPE="": today's 14).
read -ra RECIPE <<<"${RECIPE-experiment=small_default}"
read -ra TRAIN_ARGS <<<"${TRAIN_ARGS:-}"
read -ra STUDY_ARGS <<<"${STUDY_ARGS:-}"
# shellcheck source=experiments/formulations/models.sh
source "$(dirname "$0")/models.sh"   # OVERRIDES: the five models
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
     ddpm:100,spacing=logsnr flow_sde:4,eta=1.0 flow_sde:8,eta=1.0 flow_sde:16,eta=1.0 flow_sde:35,eta=1.0 flow_sde:100,eta=1.0
     dpm_solver_sde:8 dpm_solver_sde:16 dpm_solver_sde:20)
train() {  # name, overrides...: trains into $RUNS/<name> unless its checkpoint is there
  local name=$1; shift
  [[ -f "$RUNS/$name/checkpoints/last.ckpt" ]] ||
    "$PY" -m diffusion_lit.train "${RECIPE[@]}" "$@" "${TRAIN_ARGS[@]}" hydra.run.dir="$RUNS/$name"
}
study() {  # name, checkpoint, extra configurations...
  local name=$1 ckpt=$2; shift 2
  [[ -f "$RUNS/study_$name/results.json" ]] || "$PY" experiments/samplers/compare.py --ckpt "$ckpt" --num-samples 256 \
    --seed 1234 --out "$RUNS/study_$name" "${STUDY_ARGS[@]}" --configs "${FEW[@]}" "$@"
  mkdir -p "$OUT"
  cp "$RUNS/study_$name/results.json" "$OUT/results_$name.json"
}
model() {  # name: train it (unless VP / EDM name a checkpoint), then its sampler cells
  local name=$1 ckpt=$RUNS/$1/checkpoints/last.ckpt extra=(flow_euler:100 flow_adaptive)
  [[ -v "OVERRIDES[$name]" ]] || { echo "unknown model $name: one of ${!OVERRIDES[*]}" >&2; exit 2; }
  [[ $name == vp && -n "${VP:-}" ]] && ckpt=$VP
  [[ $name == edm && -n "${EDM:-}" ]] && ckpt=$EDM
  [[ $name == vp || $name == edm ]] && extra=(flow_euler:100)
  # shellcheck disable=SC2086  # the overrides are words
  [[ -f "$ckpt" ]] || train "$name" ${OVERRIDES[$name]}
  study "$name" "$ckpt" "${extra[@]}"
}
reflow() {  # the reflow of the logit-normal flow: pairs, training from its weights, sampler cells
  local teacher=$RUNS/flow_logit_normal/checkpoints/last.ckpt
  read -ra reflow_args <<<"${REFLOW_ARGS:-}"
  [[ -f "$teacher" ]] || model flow_logit_normal
  [[ -f "$RUNS/pairs_logit_normal.pt" ]] || "$PY" -m diffusion_lit.reflow ckpt="$teacher" \
    num_pairs="${REFLOW_PAIRS:-5000}" "${reflow_args[@]}" out="$RUNS/pairs_logit_normal.pt"
  train reflow_logit_normal formulation=flow data=reflow_pairs data.path="$RUNS/pairs_logit_normal.pt" \
    init_weights="$teacher" trainer.max_epochs="${REFLOW_EPOCHS:-4}"
  study reflow_logit_normal "$RUNS/reflow_logit_normal/checkpoints/last.ckpt" flow_euler:100 flow_adaptive
}
if (($#)); then
  if [[ $1 == model && $# == 2 ]]; then model "$2"
  elif [[ $1 == reflow && $# == 1 ]]; then reflow
  else echo "usage: $0 [model NAME | reflow]" >&2; exit 2
  fi
  exit
fi
for name in vp edm flow_uniform flow_logit_normal flow_logit_normal_ot; do model "$name"; done
reflow
# VP and EDM also with issue 23's study of the same checkpoints (19-1000 calls, same protocol).
"$PY" experiments/formulations/best_per_budget.py --out "$OUT" \
  --studies vp="$RUNS/study_vp+experiments/formulations/results_vp.json" \
  edm="$RUNS/study_edm+experiments/formulations/results_edm.json" \
  flow_uniform="$RUNS/study_flow_uniform" flow_logit_normal="$RUNS/study_flow_logit_normal" \
  flow_logit_normal_ot="$RUNS/study_flow_logit_normal_ot" reflow_logit_normal="$RUNS/study_reflow_logit_normal"
