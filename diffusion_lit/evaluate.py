"""Evaluate a trained checkpoint: ``python -m diffusion_lit.evaluate ckpt=PATH metrics=[fid,kid]``.

Metrics (``metrics=`` one name or a list):

* ``nll``: the variational bound on the negative log-likelihood of real images (``split``,
  ``num_images``) in bits per dimension, with its prior, diffusion and decoder terms.
  Class-conditional models are evaluated given each image's label (guidance scale 1).
* ``fid``, ``kid``, ``precision_recall``: ``num_samples`` generated images against
  ``num_real`` real images of ``reference_split``, in the feature space of ``extractor``
  (``extractor=inception`` or ``domain``, conf/extractor/; see :mod:`diffusion_lit.metrics.features`). Real features are
  cached per (dataset, split, extractor, size, count).
* ``triangles``: triangle validity and the 1-D Wasserstein distances between generated and
  real triangles' area, angles and centroid (triangle data only).
* ``memorization``: nearest-training-image distances of generated samples against those of
  held-out real images; ``gallery=PATH`` also draws each sample beside its nearest
  training images.
* ``digits``: share of samples the domain MNIST classifier labels with confidence > 0.9, and
  how evenly the predicted classes spread.

Sample metrics use the checkpoint's sampler unless ``sampler=...`` is given;
``sweep_steps=[10,20,50]`` repeats them for each number of steps and writes a table and a
plot against the number of network evaluations. Every result carries a protocol card
(extractor and weights hash, image counts, sampler and steps, EMA, seed, split, versions).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from diffusion_lit.runs.evaluation import evaluate
from diffusion_lit.utils.errors import report_user_errors
from diffusion_lit.utils.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
