"""The LightningModule: training a U-Net denoiser under a NoiseSchedule (eps, x0 or v target,
optional class conditioning), and sampling with any sampler, with classifier-free guidance."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lit.data.batch import images_of, labels_of, noise_of
from diffusion_lit.diffusion.formulations import VP, Formulation, check_formulation
from diffusion_lit.diffusion.guidance import autoguided_eps, check_guide_scale, guided_eps
from diffusion_lit.diffusion.process import Prediction, check_prediction, q_sample
from diffusion_lit.diffusion.samplers import Edit, ModelFn, SamplerCallback
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.lit.base import LrDecay, TrainingModule, check_lr_decay
from diffusion_lit.lit.precision import SAMPLE_PRECISIONS, SamplePrecision, sample_in_bf16
from diffusion_lit.utils.errors import UserError, check_choice

# The loss of each sample, between the network output and its target (B, ...) -> (B,).
# Element-wise ones are averaged over the sample: MSE is Ho et al.'s L_simple, L1 the cat slides'
# choice (seed 002), Huber (delta 1) quadratic near 0 and linear in the tails.
PSEUDO_HUBER_C = 0.00054


def _mean_over_sample(
    elementwise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda output, target: elementwise(output, target).flatten(1).mean(dim=1)


mean_square_error = _mean_over_sample(lambda output, target: F.mse_loss(output, target, reduction="none"))


def pseudo_huber(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sqrt(||e||^2 + c^2) - c on each sample's whole error vector e, with c = 0.00054 sqrt(d) for d
    dimensions (Song & Dhariwal 2023, consistency training; Lee et al. 2024 for rectified flows),
    divided by sqrt(d): sqrt(mean(e^2) + 0.00054^2) - 0.00054. About the error's RMS wherever it is
    well above c, so a sample's pull does not grow with the square of its error as under MSE."""
    return torch.sqrt(mean_square_error(output, target) + PSEUDO_HUBER_C**2) - PSEUDO_HUBER_C


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": mean_square_error,
    "l1": _mean_over_sample(lambda output, target: F.l1_loss(output, target, reduction="none")),
    "huber": _mean_over_sample(lambda output, target: F.huber_loss(output, target, reduction="none", delta=1.0)),
    "pseudo_huber": pseudo_huber,
}
Loss = Literal["mse", "l1", "huber", "pseudo_huber"]
Weighting = Literal["uniform", "min_snr"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
# torch.compile wrappers by net, outside the module tree: state_dict, checkpoints and the EMA
# copy (a deepcopy of the module) keep the plain net.
_COMPILED: weakref.WeakKeyDictionary[nn.Module, Callable[..., torch.Tensor]] = weakref.WeakKeyDictionary()


def compiled(net: nn.Module) -> Callable[..., torch.Tensor]:
    """``torch.compile(net)``, built once per net."""
    if net not in _COMPILED:
        _COMPILED[net] = torch.compile(net)
    return _COMPILED[net]


def check_sample_precision(precision: str) -> SamplePrecision:
    return check_choice("sample_precision", precision, SAMPLE_PRECISIONS)  # type: ignore[return-value]


def sample_labels(labels: Any, num_samples: int, num_classes: int) -> torch.Tensor | None:
    """The ``labels=`` option as a (num_samples,) tensor: one class for all, or a list repeated
    to length; None keeps the module's default (classes in turn)."""
    if labels is None:
        return None
    if num_classes == 0:
        raise UserError("labels= was given, but the checkpoint's model is unconditional (model.num_classes=0).")
    values = [labels] if isinstance(labels, int) else list(labels)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_classes for v in values):
        raise UserError(f"labels must be class indices in [0, {num_classes - 1}] (one or a list), got {labels!r}.")
    return torch.tensor(values).repeat((num_samples + len(values) - 1) // len(values))[:num_samples]


class DiffusionModule(TrainingModule):
    """Trains ``net`` on x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps to predict eps, x_0 or v.

    Args:
        net: the denoiser, ``net(x_t (B,C,H,W), t (B,)[, labels (B,)]) -> (B,C,H,W)``; a
            class-conditional net has ``num_classes > 0`` and a ``null_label``.
        schedule: the noise schedule (its buffers move with the module).
        optimizer: a partial optimizer constructor (Hydra ``_partial_: true``) taking params.
        sampler: a partial sampler (``diffusion_lit.diffusion.samplers``) used by ``sample``.
        image_shape: (C, H, W) of the images the net is trained on (and ``sample`` draws).
        prediction: the net's target, ``"eps"``, ``"x0"`` or ``"v"`` (see
            :mod:`diffusion_lit.diffusion.process`); samplers always receive eps.
        loss: ``"mse"``, ``"l1"``, ``"huber"`` or ``"pseudo_huber"`` between output and target.
        weighting: ``"uniform"`` or ``"min_snr"`` (Min-SNR-gamma, Hang et al. 2023).
        min_snr_gamma: gamma of min-SNR weighting (paper: 5).
        cond_drop_prob: for a class-conditional net, the probability of replacing a label by
            the null label during training (classifier-free guidance; Ho & Salimans use 0.1-0.2).
        guidance_scale: default classifier-free guidance scale of ``sample`` (1 = plain
            conditional sampling).
        lr_warmup_steps: linear learning-rate warm-up over this many optimizer steps.
        lr_decay: ``"none"`` (constant after warm-up) or ``"cosine"`` (to 0 at the last step).
        run_config: the resolved run config, stored in every checkpoint so that it can be
            rebuilt without the original config files.
        channels_last: keep the net's weights and inputs in NHWC memory order (faster
            convolutions on some CPUs and on tensor-core GPUs; the numbers are unchanged).
        compile: run the training forward through ``torch.compile`` (the first step pays the
            compilation; see experiments/benchmarks/README.md for its cost and gain).
        sample_precision: ``"32-true"``, or ``"bf16-mixed"`` to run the net's sampling calls
            under bfloat16 autocast (the sampler's update maths stays float32), or ``"auto"``:
            bf16 only on devices with native bf16 (:mod:`diffusion_lit.lit.precision`).
        formulation: how the net is trained and called (:mod:`diffusion_lit.diffusion.formulations`):
            None is VP with ``prediction`` and ``weighting``; an ``EDM`` is Karras et al. 2022.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: NoiseSchedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        sampler: Callable[..., torch.Tensor],
        image_shape: tuple[int, int, int],
        prediction: Prediction = "eps",
        loss: Loss = "mse",
        weighting: Weighting = "uniform",
        min_snr_gamma: float = 5.0,
        cond_drop_prob: float = 0.1,
        guidance_scale: float = 1.0,
        lr_warmup_steps: int = 0,
        lr_decay: LrDecay = "none",
        run_config: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        sample_precision: SamplePrecision = "32-true",
        formulation: Formulation | None = None,
    ) -> None:
        super().__init__()
        check_choice("model.loss", loss, sorted(LOSSES))
        check_choice("model.weighting", weighting, WEIGHTINGS)
        if not min_snr_gamma > 0:
            raise UserError(f"model.min_snr_gamma must be > 0 (paper: 5), got {min_snr_gamma!r}.")
        if not 0.0 <= cond_drop_prob < 1.0:
            raise UserError(f"model.cond_drop_prob must lie in [0, 1), got {cond_drop_prob!r}.")
        if lr_warmup_steps < 0:
            raise UserError(f"lr_warmup_steps must be >= 0, got {lr_warmup_steps!r}.")
        self.channels_last = bool(channels_last)
        self.net = net.to(memory_format=torch.channels_last) if self.channels_last else net
        self.compile_net = bool(compile)  # not self.compile: that is nn.Module's compile()
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.sampler = sampler
        self.image_shape = tuple(int(size) for size in image_shape)
        self.loss_fn = LOSSES[loss]
        # prediction, weighting and min_snr_gamma live in the (VP) formulation, not on the module.
        if formulation is None:
            formulation = VP(check_prediction(prediction), weighting, float(min_snr_gamma))
        else:
            check_prediction(prediction)
        check_formulation(formulation, prediction, weighting)
        self.formulation = formulation
        self.num_classes = int(getattr(net, "num_classes", 0))
        self.cond_drop_prob = float(cond_drop_prob)
        self.guidance_scale = guidance_scale
        # (guide module, scale) of autoguidance, set by ``set_guide``; a tuple so that the guide
        # is not registered as a submodule (it is no part of this model's weights or checkpoint).
        self._guide: tuple[DiffusionModule, float] | None = None
        self.lr_warmup_steps = lr_warmup_steps
        self.lr_decay = check_lr_decay(lr_decay)
        self.sample_precision = check_sample_precision(sample_precision)
        self.run_config = run_config or {}
        self.save_hyperparameters(
            {
                "formulation": formulation.name,
                "prediction": prediction,
                "loss": loss,
                "weighting": weighting,
                "min_snr_gamma": min_snr_gamma,
                "cond_drop_prob": cond_drop_prob,
                "lr_warmup_steps": lr_warmup_steps,
                "lr_decay": lr_decay,
            }
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self._net(x, t, labels)

    def _net(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # Compiled for the training forward only (gradients on): validation and sampling run the
        # plain net, so they neither recompile for eval mode nor wait for a compilation.
        net = compiled(self.net) if self.compile_net and torch.is_grad_enabled() else self.net
        return net(x, t) if self.num_classes == 0 else net(x, t, labels)

    def _labels_for_net(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Labels for the net: None for an unconditional net (labels of the data are ignored).

        No range check here: this runs every training step, where reading label values would
        force a device-to-host sync; runs/training.py checks the data's classes once before fitting.
        """
        if self.num_classes == 0:
            return None
        if labels is None:
            raise UserError(
                f"the model is class-conditional (model.num_classes={self.num_classes}) but the data has no "
                "labels: use a labelled dataset or model.num_classes=0."
            )
        return labels

    def _check_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """``_labels_for_net`` plus a range check, for labels a user passes to sampling."""
        labels = self._labels_for_net(labels)
        if labels is not None and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise UserError(
                f"labels must lie in [0, {self.num_classes - 1}] for model.num_classes={self.num_classes}, "
                f"got values in [{int(labels.min())}, {int(labels.max())}]."
            )
        return labels

    def diffusion_loss(
        self,
        x0: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The training loss of the formulation (:mod:`diffusion_lit.diffusion.formulations`):
        for VP t ~ U{0..T-1}, eps ~ N(0, I), x_t = q_sample(x0, t, eps), then
        loss(net(x_t, t[, labels]), target) with target eps, x0 or v, averaged per sample,
        weighted per sample (uniform, or min-SNR), averaged over the batch. With eps, MSE and
        uniform weights this is L_simple (Ho et al. 2020, eq. 14). For EDM, ln(sigma) normal and
        the MSE of the preconditioned net F against its target (EDM eq. 8).

        For a conditional net, each label is replaced by the null label with probability
        ``cond_drop_prob`` while training (``generator`` given = evaluation: no dropping).
        ``noise`` given (reflow pairs): the noise paired with each image, used as it is.
        """
        labels = self._labels_for_net(labels)
        device = generator.device if generator is not None else x0.device
        levels = self.formulation.draw_levels(self.schedule, x0.shape[0], device, generator).to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, device=device, dtype=x0.dtype, generator=generator).to(x0.device)
        elif getattr(self.formulation, "coupling", "independent") != "independent":
            raise UserError(
                "the data pairs each image with its noise (reflow pairs), and formulation.coupling="
                f"{self.formulation.coupling} would pair them again: use formulation.coupling=independent."
            )
        labels = self.dropped_labels(labels, generator)
        example = self.formulation.training_example(self.schedule, x0, levels, noise)
        output = self._net(example.net_input, example.net_time, labels)
        per_sample = self.loss_fn(output.float(), example.target.float())
        if example.weight is not None:
            per_sample = per_sample * example.weight
        return per_sample.mean()

    def dropped_labels(self, labels: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor | None:
        """While training (no ``generator``), each label replaced by the null label with probability
        ``cond_drop_prob`` (classifier-free guidance learns the unconditional model from those)."""
        if labels is not None and self.training and generator is None and self.cond_drop_prob > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.cond_drop_prob
            labels = torch.where(drop, torch.full_like(labels, self.net.null_label), labels)
        return labels

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.diffusion_loss(images_of(batch), labels_of(batch), noise=noise_of(batch))
        # Reading the loss on the host waits for the device: check it every log_every_n_steps
        # steps only. A diverged run keeps a non-finite loss, so it is still stopped promptly.
        if self._on_logging_step() and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step}: lower optimizer.lr, "
                "keep trainer.gradient_clip_val set, or use trainer.precision=32."
            )
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def _on_logging_step(self) -> bool:
        trainer = self._trainer
        every = trainer.log_every_n_steps if trainer is not None else 1
        return self.global_step % max(1, every) == 0

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # A fixed generator per batch draws the same (t, eps) every epoch, so that the validation
        # loss curve compares models rather than random draws.
        images = images_of(batch)
        generator = torch.Generator(device=images.device).manual_seed(batch_idx)
        loss = self.diffusion_loss(images, labels_of(batch), generator=generator, noise=noise_of(batch))
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def conditional_eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """eps predicted at (x_t, t[, labels]), whatever the net's parameterization (eps, x0, v);
        the building block of guidance and its compositions (:mod:`diffusion_lit.diffusion.guidance`)."""
        # Only ever switch autocast on: enabled=False would also switch off a caller's autocast.
        bf16 = sample_in_bf16(self.sample_precision, x.device.type)
        net_input, net_time = self.formulation.net_inputs(self.schedule, x, t)
        with torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            output = self._net(net_input, net_time, labels)
        return self.formulation.eps(self.schedule, output.to(x.dtype), x, t)

    def eps_fn(self, labels: torch.Tensor | None = None, guidance_scale: float | None = None) -> ModelFn:
        """The sampler-facing noise predictor ``model_fn(x_t, t) -> eps``: the net's output
        converted from its parameterization and, for a conditional net, classifier-free guidance
        towards ``labels`` at ``guidance_scale`` (default: the module's); with a guide
        (``set_guide``), autoguided by it (the guide sees the same labels and guidance)."""
        model_fn = self._own_eps_fn(labels, guidance_scale)
        if self._guide is None:
            return model_fn
        guide, scale = self._guide
        return autoguided_eps(model_fn, guide._own_eps_fn(labels, guidance_scale), scale)

    def _own_eps_fn(self, labels: torch.Tensor | None, guidance_scale: float | None) -> ModelFn:
        if self.num_classes == 0:
            if labels is not None:
                raise UserError("labels were given, but the model is unconditional (trained with model.num_classes=0).")
            return lambda x, t: self.conditional_eps(x, t, None)
        labels = self._check_labels(labels)
        return guided_eps(self.conditional_eps, labels, self.scale_or_default(guidance_scale), self.net.null_label)

    @property
    def guide(self) -> DiffusionModule | None:
        return None if self._guide is None else self._guide[0]

    @property
    def autoguidance(self) -> dict[str, Any] | None:
        """The guide's checkpoint and scale, for protocol cards (None without a guide)."""
        if self._guide is None:
            return None
        guide, scale = self._guide
        return {"guide_checkpoint": getattr(guide, "checkpoint_path", None), "guide_scale": scale}

    def set_guide(self, guide: DiffusionModule | None, scale: float = 2.0) -> None:
        """Sample with autoguidance (:func:`~diffusion_lit.diffusion.guidance.autoguided_eps`):
        ``guide`` is a weaker model of the same data and noise schedule, e.g. an earlier EMA
        snapshot of the same run; ``scale`` w > 1 extrapolates away from it. None removes it."""
        if guide is None:
            self._guide = None
            return
        if tuple(guide.image_shape) != tuple(self.image_shape):
            raise UserError(f"the guide draws {tuple(guide.image_shape)} images, this model {tuple(self.image_shape)}.")
        if guide.num_classes != self.num_classes:
            raise UserError(f"the guide has {guide.num_classes} classes, this model {self.num_classes}: use a guide "
                            "trained with the same model.num_classes.")  # fmt: skip
        ours, theirs = self.schedule.alphas_bar, guide.schedule.alphas_bar.to(self.schedule.alphas_bar)
        if ours.shape != theirs.shape or not torch.allclose(ours, theirs):
            raise UserError("the guide was trained with another noise schedule (or T); autoguidance needs the same.")
        self._guide = (guide.to(self.device).eval(), check_guide_scale(scale))

    def scale_or_default(self, guidance_scale: float | None) -> float:
        return self.guidance_scale if guidance_scale is None else guidance_scale

    @torch.inference_mode()
    def sample(
        self,
        num_samples: int,
        generator: torch.Generator | None = None,
        callback: SamplerCallback | None = None,
        noise: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
        model_fn: ModelFn | None = None,
        edit: Edit | None = None,
        sampler: Callable[..., torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Draw ``num_samples`` images (N, C, H, W) in [-1, 1] with the configured sampler.

        ``noise`` (N, C, H, W), when given, is the starting point instead of fresh noise. For a
        class-conditional model, ``labels`` (N,) are the classes (default: 0, 1, ..., K-1, 0, ...)
        and ``guidance_scale`` the classifier-free guidance scale (default: the module's).
        The editing tasks pass their own ``model_fn`` (anagrams, hybrids; it replaces labels and
        guidance) and ``edit`` hooks (start timestep, inpainting projection; see samplers.Edit);
        ``sampler`` replaces the configured sampler for this call.

        The net is put in eval mode for the duration (dropout off) and restored afterwards.
        """
        if noise is None:
            device = generator.device if generator is not None else self.device
            noise = torch.randn((num_samples, *self.image_shape), generator=generator, device=device)
        noise = noise.to(self.device)
        if model_fn is None:
            model_fn = self.eps_fn(self.labels_for(labels, noise.shape[0]), guidance_scale)
        was_training = self.net.training
        self.net.eval()
        try:
            sampler = sampler or self.sampler
            samples = sampler(model_fn, self.schedule, noise, generator=generator, callback=callback, edit=edit)
        finally:
            self.net.train(was_training)
        return samples.clamp(-1.0, 1.0)

    def prior_images(self, noise: torch.Tensor) -> torch.Tensor:
        """Where sampling from ``noise`` starts, as an image (the noise itself here)."""
        return noise

    def forward_columns(
        self, images: torch.Tensor, num_columns: int, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], list[str]]:
        """``images`` noised by the forward process at ``num_columns`` timesteps from the first to
        the last (one noise draw for all), and a label per column."""
        timesteps = sorted(
            {round(i * (self.schedule.num_timesteps - 1) / (num_columns - 1)) for i in range(num_columns)}
        )
        noise = torch.randn(images.shape, generator=generator, device=generator.device).to(images.device)
        columns = [
            q_sample(self.schedule, images, torch.full((images.shape[0],), t, device=images.device), noise)
            for t in timesteps
        ]
        return columns, ["x_0"] + [f"t={t + 1}" for t in timesteps[1:]]

    def labels_for(self, labels: torch.Tensor | list[int] | None, count: int) -> torch.Tensor | None:
        """``count`` labels on the module's device: the given ones (one per image), or for a
        conditional model without them the classes in turn (0, 1, ..., K-1, 0, ...)."""
        if labels is None:
            labels = self.default_labels(count)
            if labels is None:  # an unconditional model
                return None
        labels = torch.as_tensor(labels, dtype=torch.long).to(self.device)
        if labels.shape != (count,):
            raise UserError(f"need one label per sample ({count}), got {labels.numel()}.")
        return labels

    def default_labels(self, count: int) -> torch.Tensor | None:
        """The classes a conditional model samples when none are given: 0, 1, ..., K-1, 0, ...
        (every class equally often); None for an unconditional model."""
        return torch.arange(count) % self.num_classes if self.num_classes > 0 else None

    def sample_in_batches(
        self,
        num_samples: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """``sample`` for many images at bounded memory: batches of ``batch_size``, one generator.

        ``labels`` (num_samples,) as in ``sample`` (default for a conditional model: classes in
        turn, so that all classes are equally represented). ``on_batch(done, num_samples)`` is
        called before each batch (e.g. to print progress). Returns (num_samples, C, H, W) on the CPU.
        """
        if labels is None:
            labels = self.default_labels(num_samples)
        batches = []
        for done in range(0, num_samples, batch_size):
            if on_batch is not None:
                on_batch(done, num_samples)
            size = min(batch_size, num_samples - done)
            batch_labels = None if labels is None else labels[done : done + size]
            batches.append(
                self.sample(size, generator=generator, labels=batch_labels, guidance_scale=guidance_scale).cpu()
            )
        return torch.cat(batches)
