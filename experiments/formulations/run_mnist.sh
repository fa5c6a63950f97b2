#!/usr/bin/env bash
# VP, EDM and the logit-normal rectified flow at the experiment=mnist_fast budget (one epoch of
# MNIST, class-conditional, guidance 2): each checkpoint sampled by the samplers at 20-100 network
# calls, and the flow also at 1-16 (500 samples per cell, seed 1234, classes in turn), scored by
# domain FID and the share the MNIST classifier recognises; tables and figures into
# experiments/formulations/mnist/. Needs MNIST under DATA_ROOT and the domain classifier
# (python -m diffusion_lit.train_features data=mnist data.root=DATA_ROOT).
#   experiments/formulations/run_mnist.sh DATA_ROOT [VP checkpoint] [EDM checkpoint] [flow checkpoint]
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
ROOT=${1:?usage: run_mnist.sh DATA_ROOT [VP checkpoint] [EDM checkpoint] [flow checkpoint]}
OUT=${OUT:-experiments/formulations/mnist}
RUNS=${RUNS:-outputs/formulations_mnist}
declare -A CKPT=([vp]=${2:-} [edm]=${3:-} [flow_logit_normal]=${4:-})
declare -A OVERRIDES=([vp]="" [edm]="formulation=edm" [flow_logit_normal]="formulation=flow")
# The training runs' own final evaluation is cut to 200 samples: the study below scores them.
train=(experiment=mnist_fast data.root="$ROOT" callbacks.progress_bar=null eval.num_samples=200)
# ddpm:50,spacing=time is experiment=mnist_fast's sampler (DDPM-50, the reference of the target).
CONFIGS=(
  ddpm:50,spacing=time ddpm:50,spacing=logsnr ddim:50 dpm_solver:20 dpm_solver_sde:20 dpm_solver_sde:50
  dpmpp_3m_sde:50 heun:18 heun:18,s_churn=40,s_tmin=0.05,s_tmax=50,s_noise=1.003 euler_ancestral:100
)
# The flow's few-call cells (triangle study's best kinds) and its own samplers at 20-100 calls.
FLOW_CONFIGS=(
  flow_euler:1 flow_euler:2 flow_euler:4 flow_euler:8 flow_euler:16 flow_euler:4,shift=3.0 flow_euler:8,shift=3.0
  flow_midpoint:2 flow_midpoint:4 flow_midpoint:8 flow_midpoint:4,shift=3.0 dpm_solver:8 dpm_solver:16
  flow_sde:8 flow_sde:16 flow_sde:35 flow_sde:100 flow_heun:18
)
for name in vp edm flow_logit_normal; do
  ckpt=${CKPT[$name]}
  if [[ -z "$ckpt" ]]; then
    ckpt=$RUNS/$name/checkpoints/last.ckpt
    # shellcheck disable=SC2086  # the overrides are words
    [[ -f "$ckpt" ]] || "$PY" -m diffusion_lit.train "${train[@]}" ${OVERRIDES[$name]} hydra.run.dir="$RUNS/$name"
  fi
  configs=("${CONFIGS[@]}")
  [[ $name == flow_* ]] && configs+=("${FLOW_CONFIGS[@]}")
  [[ -f "$RUNS/study_$name/results.json" ]] ||
    "$PY" experiments/samplers/compare.py --ckpt "$ckpt" --data-root "$ROOT" --metrics fid digits --extractor domain \
      --num-samples 500 --seed 1234 --out "$RUNS/study_$name" --configs "${configs[@]}"
  mkdir -p "$OUT"; cp "$RUNS/study_$name/results.json" "$OUT/results_$name.json"
done
studies=(vp="$OUT/results_vp.json" edm="$OUT/results_edm.json" flow_logit_normal="$OUT/results_flow_logit_normal.json")
for metric in fid digits_confident_share; do
  "$PY" experiments/formulations/combine.py --studies "${studies[@]}" --metric "$metric" --out "$RUNS/combined_$metric"
  cp "$RUNS/combined_$metric/results.md" "$OUT/results_$metric.md"
  cp "$RUNS/combined_$metric/quality_vs_calls.png" "$OUT/${metric}_vs_calls.png"
  "$PY" experiments/formulations/best_per_budget.py --studies "${studies[@]}" --metric "$metric" \
    --budgets 1 2 4 8 16 35 100 --out "$RUNS/best_$metric"
  cp "$RUNS/best_$metric/best_per_budget.md" "$OUT/best_per_budget_$metric.md"
  cp "$RUNS/best_$metric/best_per_budget.png" "$OUT/best_per_budget_$metric.png"
done
