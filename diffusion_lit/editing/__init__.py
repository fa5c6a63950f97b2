"""Editing and denoising tasks on trained models (seed 004 part A): forward noising, classical
and one-step denoising, iterative denoising, SDEdit, inpainting, visual anagrams and hybrid
images. ``python -m diffusion_lit.edit task=<name> ckpt=...`` runs them."""
