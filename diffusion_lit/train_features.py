"""Train the domain feature network: ``python -m diffusion_lit.train_features data=mnist``.

Fits :class:`diffusion_lit.models.classifier.DigitClassifier` on the MNIST training set, reports
its accuracy on the test set and saves it (atomically) where ``extractor=domain`` looks for it:
``<data root>/features/mnist_classifier.pt``.
"""

from __future__ import annotations

import sys

import hydra
import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from diffusion_lit.lit.classifier import ClassifierModule
from diffusion_lit.metrics.features import domain_checkpoint_path
from diffusion_lit.utils.allocator import keep_freed_memory
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError, report_user_errors
from diffusion_lit.utils.files import atomic_write
from diffusion_lit.utils.overrides import null_groups_removed
from diffusion_lit.utils.paths import CONFIG_DIR


def train_features(cfg: DictConfig) -> float:
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if getattr(datamodule, "num_classes", None) != 10 or datamodule.num_channels != 1:
        raise UserError("train_features trains the MNIST digit classifier: use data=mnist (10 classes, 1 channel).")
    module = ClassifierModule(lr=cfg.lr)
    trainer = pl.Trainer(
        max_epochs=cfg.epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    accuracy = float(trainer.callback_metrics["val/accuracy"])
    out = cfg.out or domain_checkpoint_path(cfg.paths.data_dir)
    with atomic_write(out) as file:
        torch.save(
            {"arch": {"num_classes": 10, "num_features": module.net.num_features},
             "state_dict": module.net.state_dict(), "test_accuracy": accuracy, "image_size": datamodule.image_size},
            file,
        )  # fmt: skip
    console.print(f"test accuracy {accuracy:.4f}; wrote {out}", highlight=False)
    return accuracy


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_features")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: train_features(cfg))


if __name__ == "__main__":
    keep_freed_memory()  # as `make` runs it: freed activation buffers stay mapped (utils/allocator.py)
    sys.argv = null_groups_removed(sys.argv, CONFIG_DIR)  # logger=null: no logger (Hydra's ~logger)
    main()
