#!/usr/bin/env bash
# Issue 27's formulation study on MNIST at the experiment=mnist_fast budget (one epoch of the 60,000
# training digits, class-conditional, classifier-free guidance 2): VP (mnist_fast as it is), EDM,
# rectified flow with uniform and logit-normal training times, logit-normal with minibatch OT, and
# one reflow of the logit-normal flow (10,000 pairs by flow_euler 8 steps at shift 3, guidance 2,
# then 4 epochs from its weights: 38,000 more images; sampled without guidance). Each model with
# the same 17 sampler configurations at 1-50 network calls (500 samples per cell, seed 1234,
# classes in turn), scored by domain FID and the share the MNIST classifier recognises; then 500
# real test digits under the same protocol (what a perfect sampler scores) and the best per
# budget: tables and figures into OUT.
#   experiments/formulations/run_mnist.sh DATA_ROOT               # everything, in turn (skips what is there)
#   experiments/formulations/run_mnist.sh DATA_ROOT model NAME    # one model: train it, then its cells
# NAME: vp edm flow_uniform flow_logit_normal flow_logit_normal_ot (reflow_logit_normal comes with
# everything). Needs MNIST under DATA_ROOT and the domain classifier, trained once per machine:
#   python -m diffusion_lit.train_features data=mnist data.root=DATA_ROOT
# Domain FIDs compare only within one classifier (each row's extractor_sha256; best_per_budget.py
# refuses a mix), so run every model against the same cache. About 8 min per training run and
# 12 min per model's cells on the 2-core development machine (fp32).
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
ROOT=${1:?usage: run_mnist.sh DATA_ROOT [model NAME]}
shift
OUT=${OUT:-experiments/formulations/mnist/one_classifier}
RUNS=${RUNS:-outputs/formulations_mnist}
read -ra TRAIN_ARGS <<<"${TRAIN_ARGS:-}"
read -ra STUDY_ARGS <<<"${STUDY_ARGS:-}"
# The training runs' own final evaluation is cut to 200 samples: the cells below score them.
RECIPE=(experiment=mnist_fast callbacks.progress_bar=null eval.num_samples=200)
# shellcheck source=experiments/formulations/models.sh
source "$(dirname "$0")/models.sh"   # OVERRIDES: the five models
# The same configurations for every model: DDPM 50 (mnist_fast's sampler until 2026-12-03, the
# reference of issue 23's target), DPM-Solver++(2M) at 4-20 steps (mnist_fast's sampler now: 20),
# the flow ODE's Euler and midpoint steps (on VP and EDM through the flow conversion), even in t and
# at SD3's shift 3, and the stochastic samplers (the flow SDE, SDE-DPM-Solver++).
CONFIGS=(
  ddpm:50,spacing=time dpm_solver:20 flow_euler:1 flow_euler:2 flow_euler:4 flow_euler:8 flow_euler:16
  flow_euler:4,shift=3.0 flow_midpoint:2 flow_midpoint:4 dpm_solver:4 dpm_solver:8 dpm_solver:16
  dpm_solver_sde:8 dpm_solver_sde:16 flow_sde:8,eta=1.0 flow_sde:16,eta=1.0
)
train() {  # name, overrides...: trains into $RUNS/<name> unless its checkpoint is there
  local name=$1; shift
  [[ -f "$RUNS/$name/checkpoints/last.ckpt" ]] ||
    "$PY" -m diffusion_lit.train "${RECIPE[@]}" "$@" "${TRAIN_ARGS[@]}" hydra.run.dir="$RUNS/$name"
}
study() {  # name, checkpoint
  [[ -f "$RUNS/study_$1/results.json" ]] || "$PY" experiments/samplers/compare.py --ckpt "$2" --data-root "$ROOT" \
    --metrics fid digits --extractor domain --num-samples 500 --seed 1234 --out "$RUNS/study_$1" "${STUDY_ARGS[@]}" \
    --configs "${CONFIGS[@]}"
  mkdir -p "$OUT"
  cp "$RUNS/study_$1/results.json" "$OUT/results_$1.json"
}
model() {  # name: train it, then its cells
  [[ -v "OVERRIDES[$1]" ]] || { echo "unknown model $1: one of ${!OVERRIDES[*]}" >&2; exit 2; }
  # shellcheck disable=SC2086  # the overrides are words
  train "$1" data.root="$ROOT" ${OVERRIDES[$1]}
  study "$1" "$RUNS/$1/checkpoints/last.ckpt"
}
if (($#)); then
  [[ $1 == model && $# == 2 ]] || { echo "usage: $0 DATA_ROOT [model NAME]" >&2; exit 2; }
  model "$2"
  exit
fi
names=(vp edm flow_uniform flow_logit_normal flow_logit_normal_ot)
for name in "${names[@]}"; do model "$name"; done
LN=$RUNS/flow_logit_normal/checkpoints/last.ckpt
[[ -f "$RUNS/pairs_logit_normal.pt" ]] || "$PY" -m diffusion_lit.reflow ckpt="$LN" num_pairs=10000 \
  sampler=flow_euler sampler.steps=8 sampler.shift=3.0 out="$RUNS/pairs_logit_normal.pt"
# The pairs stand in for MNIST at its 28 px (data.root does not apply); the model's evaluation
# compares with MNIST's digits, the data its teacher learnt. It samples without guidance: its pairs
# were drawn with guidance 2 and carry it (guiding again over-guides: FID 119-194 at 2-50 calls).
train reflow_logit_normal formulation=flow data=reflow_pairs data.path="$RUNS/pairs_logit_normal.pt" init_weights="$LN" \
  data.image_size=28 model.guidance_scale=1.0 trainer.max_epochs=4
study reflow_logit_normal "$RUNS/reflow_logit_normal/checkpoints/last.ckpt"
names+=(reflow_logit_normal)
"$PY" experiments/formulations/real_reference.py --ckpt "$RUNS/vp/checkpoints/last.ckpt" --data-root "$ROOT" \
  --split val --num 500 | sed -n '/^{/,$p' > "$OUT/real_reference.json"   # the JSON, without the progress line
studies=()
for name in "${names[@]}"; do studies+=("$name=$OUT/results_$name.json"); done
for metric in fid digits_confident_share; do
  "$PY" experiments/formulations/combine.py --studies "${studies[@]}" --metric "$metric" --out "$RUNS/combined_$metric"
  cp "$RUNS/combined_$metric/results.md" "$OUT/results_$metric.md"
  cp "$RUNS/combined_$metric/quality_vs_calls.png" "$OUT/${metric}_vs_calls.png"
  "$PY" experiments/formulations/best_per_budget.py --studies "${studies[@]}" --metric "$metric" \
    --budgets 1 2 4 8 16 35 100 --out "$RUNS/best_$metric"
  cp "$RUNS/best_$metric/best_per_budget.md" "$OUT/best_per_budget_$metric.md"
  cp "$RUNS/best_$metric/best_per_budget.png" "$OUT/best_per_budget_$metric.png"
done
