"""The run configs' schema: every key's type and allowed values, checked before a run loads data.

Two sources, one rule (:mod:`diffusion_lit.utils.config_types`: the node is merged into a
structured OmegaConf config, so OmegaConf itself rejects a wrong type and names the key):

- A node Hydra instantiates (``_target_``: data, schedule, sampler, optimizer, trainer, callbacks,
  loggers, model.net, formulation, an edit task, ...) takes its schema from the target's
  signature: the keys are its parameters and the types their annotations. A new option of a class
  is part of the schema the moment it exists, and a key the class does not take is an error here
  rather than a ``TypeError`` from ``instantiate`` minutes later.
- The other sections of each command's config (``model``, ``eval``, the top-level keys) are the
  dataclasses below.

:func:`check_config_types` walks a whole config; :mod:`diffusion_lit.runs.config_checks` adds the
ranges and cross-field rules that need more than one value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omegaconf import MISSING, DictConfig

from diffusion_lit.data.base import Split
from diffusion_lit.diffusion.likelihood import ReverseVariance
from diffusion_lit.diffusion.ode_likelihood import Trace
from diffusion_lit.diffusion.process import Prediction
from diffusion_lit.lit.base import LrDecay
from diffusion_lit.lit.module import Loss, Weighting
from diffusion_lit.lit.precision import SamplePrecision
from diffusion_lit.utils.config_types import check_section, walk_instantiated


@dataclass
class ModelConfig:
    """``model``: the diffusion model around the net (conf/model/*.yaml, train.yaml)."""

    prediction: Prediction = "eps"
    loss: Loss = "mse"
    weighting: Weighting = "uniform"
    min_snr_gamma: float = 5.0
    num_classes: int = 0
    cond_drop_prob: float = 0.1
    guidance_scale: float = 1.0
    channels_last: bool = False
    compile: bool = False
    sample_precision: SamplePrecision = "32-true"
    net: Any = None


@dataclass
class EvalConfig:
    """``eval``: the final samples of a training run and their metrics."""

    num_samples: int = 256
    batch_size: int = 256
    seed: int = 0
    metrics: list[str] = field(default_factory=list)
    extractor: Any = None
    num_real: int = 10000
    reference_split: Split = "train"
    guide: str | None = None
    guide_scale: float = 2.0


@dataclass
class DenoiserConfig:
    """``denoiser``: experiment=single_step_denoiser."""

    sigma: float = 0.5
    eval_sigmas: list[float] = field(default_factory=list)


@dataclass
class TrainConfig:
    """The top level of ``python -m diffusion_lit.train`` (conf/train.yaml)."""

    seed: int | None = 0
    ckpt_path: str | None = None
    init_weights: str | None = None
    optimized_metric: str | None = None
    float32_matmul_precision: Literal["highest", "high", "medium"] | None = None
    lr_warmup_steps: int = 0
    lr_decay: LrDecay = "none"
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    denoiser: DenoiserConfig | None = None
    # Instantiated groups: their schema is their target's signature (check_instantiated).
    schedule: Any = None
    formulation: Any = None
    data: Any = None
    sampler: Any = None
    optimizer: Any = None
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None
    extractor: Any = None
    paths: Any = None


@dataclass
class DataOverrides:
    """``data`` of sample/evaluate/edit: overrides of the checkpoint's data config (null = keep)."""

    root: str | None = None
    data_dir: str | None = None
    path: str | None = None


@dataclass
class SampleConfig:
    """``python -m diffusion_lit.sample`` (conf/sample.yaml)."""

    ckpt: str = MISSING
    num_samples: int = 64
    out: str = "samples.png"
    save_tensors: str | None = None
    nrow: int | None = None
    batch_size: int = 256
    labels: Any = None  # one class, a list, or null: checked against the model's classes
    guidance_scale: float | None = None
    guide_ckpt: str | None = None
    guide_scale: float = 2.0
    seed: int = 0
    sample_precision: SamplePrecision | None = None
    device: str = "auto"
    sampler: Any = None


@dataclass
class ReflowConfig:
    """``python -m diffusion_lit.reflow`` (conf/reflow.yaml)."""

    ckpt: str = MISSING
    out: str = "reflow_pairs.pt"
    num_pairs: int = 10000
    batch_size: int = 256
    save_every: int = 5000
    guidance_scale: float | None = None
    guide_ckpt: str | None = None
    guide_scale: float = 2.0
    seed: int = 0
    sample_precision: SamplePrecision | None = None
    device: str = "auto"
    sampler: Any = None


@dataclass
class NllOptions:
    method: Literal["bound", "ode"] = "bound"
    timesteps: int | None = None
    variance: ReverseVariance = "beta"
    trace: Trace = "hutchinson"
    probes: int = 2
    rtol: float = 1.0e-5
    atol: float = 1.0e-5


@dataclass
class KidOptions:
    subset_size: int = 1000
    subsets: int = 100


@dataclass
class PrecisionRecallOptions:
    k: int = 3


@dataclass
class EvaluateConfig:
    """``python -m diffusion_lit.evaluate`` (conf/evaluate.yaml)."""

    ckpt: str = MISSING
    metrics: Any = "nll"  # a name or a list: checked against the metric names
    split: Split = "val"
    num_images: int = 256
    num_samples: int = 1000
    sample_batch_size: int = 256
    num_real: int = 10000
    reference_split: Split = "train"
    guidance_scale: float | None = None
    guide_ckpt: str | None = None
    guide_scale: float = 2.0
    sweep_steps: list[int] | None = None
    gallery: str | None = None
    batch_size: int = 64
    seed: int = 0
    sample_precision: SamplePrecision | None = None
    device: str = "auto"
    out: str | None = None
    data: DataOverrides = field(default_factory=DataOverrides)
    nll: NllOptions = field(default_factory=NllOptions)
    kid: KidOptions = field(default_factory=KidOptions)
    precision_recall: PrecisionRecallOptions = field(default_factory=PrecisionRecallOptions)
    extractor: Any = None
    paths: Any = None
    sampler: Any = None


@dataclass
class EditConfig:
    """``python -m diffusion_lit.edit`` (conf/edit.yaml; the task's own keys are its target's)."""

    ckpt: str = MISSING
    out: str | None = None
    image: str | None = None
    indices: list[int] = field(default_factory=list)
    split: Split = "val"
    mask: str = "center"
    labels: Any = None
    guidance_scale: float | None = None
    seed: int = 0
    device: str = "auto"
    data: DataOverrides = field(default_factory=DataOverrides)
    task: Any = None
    sampler: Any = None


def check_config_types(cfg: DictConfig, schema: type | None = TrainConfig) -> None:
    """Check a composed config: its sections against ``schema`` (unknown keys and types) and every
    ``_target_`` node anywhere in it against its target's signature."""
    if schema is not None:
        check_section(cfg, schema, "")
    walk_instantiated(cfg, "")
