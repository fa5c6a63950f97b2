#!/usr/bin/env bash
# VP against EDM at the experiment=mnist_fast budget (one epoch of MNIST, class-conditional,
# guidance 2): each checkpoint sampled by the samplers at 20-100 network calls (500 samples per
# cell, seed 1234, classes in turn), scored by domain FID and the share the MNIST classifier
# recognises; tables and figures into experiments/formulations/mnist/. Needs MNIST under DATA_ROOT
# and the domain classifier (python -m diffusion_lit.train_features data=mnist data.root=DATA_ROOT).
#   experiments/formulations/run_mnist.sh DATA_ROOT [VP checkpoint] [EDM checkpoint]
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
ROOT=${1:?usage: run_mnist.sh DATA_ROOT [VP checkpoint] [EDM checkpoint]}
OUT=${OUT:-experiments/formulations/mnist}
RUNS=${RUNS:-outputs/formulations_mnist}
VP=${2:-}
EDM=${3:-}
# The training runs' own final evaluation is cut to 200 samples: the study below scores them.
train=(experiment=mnist_fast data.root="$ROOT" callbacks.progress_bar=null eval.num_samples=200)
if [[ -z "$VP" ]]; then "$PY" -m diffusion_lit.train "${train[@]}" hydra.run.dir="$RUNS/vp"; VP=$RUNS/vp/checkpoints/last.ckpt; fi
if [[ -z "$EDM" ]]; then
  "$PY" -m diffusion_lit.train "${train[@]}" formulation=edm hydra.run.dir="$RUNS/edm"; EDM=$RUNS/edm/checkpoints/last.ckpt
fi
# ddpm:50,spacing=time is experiment=mnist_fast's sampler (DDPM-50, the reference of the target).
CONFIGS=(
  ddpm:50,spacing=time ddpm:50,spacing=logsnr ddim:50 dpm_solver:20 dpm_solver_sde:20 dpm_solver_sde:50
  dpmpp_3m_sde:50 heun:18 heun:18,s_churn=40,s_tmin=0.05,s_tmax=50,s_noise=1.003 euler_ancestral:100
)
for study in vp edm; do
  ckpt=$VP; [[ $study == edm ]] && ckpt=$EDM
  "$PY" experiments/samplers/compare.py --ckpt "$ckpt" --data-root "$ROOT" --metrics fid digits --extractor domain \
    --num-samples 500 --seed 1234 --out "$RUNS/study_$study" --configs "${CONFIGS[@]}"
  mkdir -p "$OUT"; cp "$RUNS/study_$study/results.json" "$OUT/results_$study.json"
done
for metric in fid digits_confident_share; do
  "$PY" experiments/formulations/combine.py --studies vp="$RUNS/study_vp" edm="$RUNS/study_edm" --metric "$metric" \
    --out "$RUNS/combined_$metric"
  cp "$RUNS/combined_$metric/results.md" "$OUT/results_$metric.md"
  cp "$RUNS/combined_$metric/quality_vs_calls.png" "$OUT/${metric}_vs_calls.png"
done
