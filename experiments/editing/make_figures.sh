#!/usr/bin/env bash
# Regenerates every figure of experiments/editing/README.md from two checkpoints:
#   experiments/editing/make_figures.sh <class-conditional MNIST ckpt> <single-step denoiser ckpt> [MNIST root]
# (the README gives the training commands). Run from the repository root.
set -euo pipefail
CKPT=${1:?class-conditional MNIST checkpoint}
DENOISER=${2:?single-step denoiser checkpoint}
ROOT=${3:-../shared/datasets}
OUT=experiments/editing
PY=${PYTHON:-.venv/bin/python}
edit() { "$PY" -m diffusion_lit.edit "$@" data.root="$ROOT"; }

edit task=forward ckpt="$CKPT" out=$OUT/forward.png
edit task=blur_baseline ckpt="$CKPT" out=$OUT/blur_baseline.png
edit task=one_step ckpt="$CKPT" out=$OUT/one_step.png
edit task=iterative ckpt="$CKPT" out=$OUT/iterative.png
edit task=sdedit ckpt="$CKPT" out=$OUT/sdedit.png
edit task=sdedit ckpt="$CKPT" image=$OUT/hand_drawn_7.png out=$OUT/sdedit_hand_drawn_7.png
edit task=sdedit ckpt="$CKPT" image=$OUT/hand_drawn_7.png labels=1 guidance_scale=3 out=$OUT/sdedit_hand_drawn_7_to_1.png
edit task=inpaint ckpt="$CKPT" mask=bottom out=$OUT/inpaint_bottom.png
edit task=inpaint ckpt="$CKPT" mask=center task.resample=5 out=$OUT/inpaint_center_repaint.png
edit task=inpaint ckpt="$CKPT" image=$OUT/hand_drawn_3.png mask=left labels=8 guidance_scale=3 out=$OUT/inpaint_hand_drawn_3_to_8.png
edit task=anagram ckpt="$CKPT" out=$OUT/anagram_6_9.png
edit task=hybrid ckpt="$CKPT" out=$OUT/hybrid_9_4.png
edit task=denoiser ckpt="$DENOISER" out=$OUT/denoiser_sigmas.png
