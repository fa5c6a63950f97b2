#!/usr/bin/env bash
# The mnist_fast study end to end (experiments/mnist_fast/README.md), about 95 minutes on the
# 2-core AVX-512 dev machine (bf16 training; steps 1-4); a full-epoch run there took 7 min, on an
# AVX2 VM without native bf16 (fp32) 20 min + 9 min of guided sampling. Needs MNIST under DATA_ROOT (../shared/datasets here) and the domain
# classifier (python -m diffusion_lit.train_features data=mnist data.root=DATA_ROOT, 2 minutes).
#   experiments/mnist_fast/run.sh DATA_ROOT [OUT]        (OUT default: runs/mnist_fast)
set -euo pipefail
root=${1:?usage: run.sh DATA_ROOT [OUT]}
out=${2:-runs/mnist_fast}
python=${PYTHON:-python}
quiet=(callbacks.progress_bar=null)

# Steps 1-3 study the unconditional model (model.num_classes=0), as the search ran; step 4 the
# class-conditional recipe that experiment=mnist_fast now is.
# 1. The previous defaults on the trial budget (15,000 images, 500 samples): the baseline row.
"$python" -m diffusion_lit.train experiment=mnist_fast model.num_classes=0 data.root="$root" "${quiet[@]}" \
  model.prediction=eps model.weighting=uniform optimizer.lr=1e-3 lr_decay=none callbacks.ema.decay=0.999 \
  sampler=dpm_solver_sde sampler.steps=50 model.sample_precision=32-true \
  data.num_samples=15000 eval.num_samples=500 eval.metrics=[digits] callbacks.denoising_strips=null \
  hydra.run.dir="$out/defaults_15k"
# 2. The Optuna search: 18 trials of 15,000 images, scored on 300 samples each (with the sampler
#    and sampling precision the search ran with, before step 3 chose DDPM-50 and bf16 sampling).
"$python" -m diffusion_lit.train experiment=mnist_fast model.num_classes=0 hparams_search=mnist_fast data.root="$root" \
  "${quiet[@]}" \
  sampler=dpm_solver_sde sampler.steps=50 model.sample_precision=32-true hydra.sweep.dir="$out/sweep"
"$python" experiments/mnist_fast/tables.py trials "$out/sweep"
# 3. Samplers on the best trial's checkpoint (500 samples each).
best=$("$python" -c "import sys; from diffusion_lit.runs.report import read_sweep
jobs = read_sweep(__import__('pathlib').Path(sys.argv[1]))
print(max(jobs, key=lambda job: job.metrics().get('digits_confident_share', -1)).folder)" "$out/sweep")/checkpoints/last.ckpt
for sampler in "ddpm sampler.steps=50" "ddim sampler.steps=50 sampler.spacing=time" "dpm_solver sampler.steps=20" \
               "dpm_solver sampler.steps=50" "dpm_solver_sde sampler.steps=50" "dpm_solver_sde sampler.steps=25"; do
  # shellcheck disable=SC2086
  "$python" -m diffusion_lit.evaluate ckpt="$best" metrics=[digits] num_samples=500 data.root="$root" \
    sample_precision=bf16-mixed sampler=$sampler
done
# 4. The recipe on the full epoch (class-conditional, class embedding from N(0, 1), guidance 2),
#    three seeds, 1,000 samples each; then the same with the zero-initialised embedding (seed 0).
"$python" -m diffusion_lit.train -m experiment=mnist_fast seed=0,1,2 data.root="$root" "${quiet[@]}" \
  hydra.sweep.dir="$out/seeds"
"$python" experiments/mnist_fast/tables.py seeds "$out/seeds"
"$python" -m diffusion_lit.train experiment=mnist_fast model.net.class_embed_init=zeros seed=0 data.root="$root" \
  "${quiet[@]}" hydra.run.dir="$out/zeros_seed0"
