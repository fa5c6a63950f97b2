"""The LightningModule of the count process (formulation=blackout): the U-Net trained on photon
counts to predict E[n_0 - x_s | x_s] (:mod:`diffusion_lit.diffusion.counts`), sampled by
tau-leaping births (:mod:`diffusion_lit.diffusion.count_samplers`).

It is a :class:`DiffusionModule` to everything that trains, samples and evaluates one (EMA, sample
grids, strips, FID, ``sample``, ``evaluate``); what only a Gaussian process has (an eps predictor:
the editing tasks, autoguidance, Gaussian samplers) raises a UserError saying so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from diffusion_lit.diffusion.count_samplers import check_count_sampler
from diffusion_lit.diffusion.counts import Blackout, ExpectedDeadFn, count_bound, images_to_counts, thin
from diffusion_lit.diffusion.guidance import guided_eps
from diffusion_lit.diffusion.likelihood import BoundTerms
from diffusion_lit.diffusion.samplers import Edit, ModelFn, SamplerCallback
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.lit.precision import sample_in_bf16
from diffusion_lit.utils.errors import UserError

_GAUSSIAN_ONLY = (
    "{what} needs a Gaussian formulation's noise predictor (formulation=vp, edm or flow); "
    "formulation=blackout models counts and samples them with sampler=blackout."
)


class CountDiffusionModule(DiffusionModule):
    """:class:`DiffusionModule` with the blackout process in place of a Gaussian one; the
    arguments are the same (``formulation`` a :class:`~diffusion_lit.diffusion.counts.Blackout`,
    ``sampler`` a partial of ``tau_leaping_sample``; ``schedule`` is not used)."""

    formulation: Blackout

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_count_sampler(self.sampler, self.formulation)

    def counts_of(self, images: torch.Tensor) -> torch.Tensor:
        """The counts n of count images 2 n / c - 1 (as float)."""
        return images_to_counts(images, self.formulation.count_max)

    def expected_dead(self, x: torch.Tensor, s: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The model's m = E[n_0 - x_s | x_s] at counts ``x`` and times ``s`` (B,)."""
        net_input, net_time = self.formulation.net_inputs(x, s)
        bf16 = not torch.is_grad_enabled() and sample_in_bf16(self.sample_precision, x.device.type)
        with torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            output = self._net(net_input, net_time, labels)
        return self.formulation.expected_dead(output, s)

    def diffusion_loss(
        self,
        x0: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The blackout loss: s ~ U(0, 1), x_s thinned from the counts, h(s) d(y, m) per pixel
        (:meth:`~diffusion_lit.diffusion.counts.Blackout.loss`), averaged over the batch."""
        if noise is not None:
            raise UserError("formulation=blackout has no noise to pair with images: reflow pairs are for flow models.")
        labels = self.dropped_labels(self._labels_for_net(labels), generator)
        counts = self.counts_of(x0)
        s = self.formulation.draw_levels(x0.shape[0], x0.device, generator)
        example = self.formulation.training_example(counts, s, generator)
        output = self._net(example.net_input.to(x0.dtype), example.net_time, labels)
        expected = self.formulation.expected_dead(output, s)
        return self.formulation.loss(example, expected).mean()

    def expected_dead_fn(
        self, labels: torch.Tensor | None = None, guidance_scale: float | None = None
    ) -> ExpectedDeadFn:
        """m(x_s, s) for the sampler; for a conditional model towards ``labels``, guided at
        ``guidance_scale`` w as m_uncond^(1 - w) m_cond^w (guidance of a Markov chain's rates,
        Nisonoff et al. 2024, "Unlocking Guidance for Discrete State-Space Diffusion")."""
        if self.num_classes == 0:
            if labels is not None:
                raise UserError("labels were given, but the model is unconditional (trained with model.num_classes=0).")
            return lambda x, s: self.expected_dead(x, s, None)
        labels = self._check_labels(labels)
        log_rate = lambda x, s, y: self.expected_dead(x, s, y).log()  # noqa: E731
        guided = guided_eps(log_rate, labels, self.scale_or_default(guidance_scale), self.net.null_label)
        return lambda x, s: guided(x, s).exp()

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
        """``num_samples`` count images (N, C, H, W) on the count grid 2 n / c - 1 (counts above c
        clipped). The process starts from all-zero images: ``noise`` only sets the number of
        samples. ``model_fn`` and ``edit`` (the editing tasks) raise a UserError."""
        if model_fn is not None or edit is not None:
            raise UserError(_GAUSSIAN_ONLY.format(what="an editing task"))
        if noise is not None:
            num_samples = noise.shape[0]
        if sampler is not None:  # the module's own was checked when it was built
            check_count_sampler(sampler, self.formulation)
        sampler = sampler or self.sampler
        expected_dead = self.expected_dead_fn(self.labels_for(labels, num_samples), guidance_scale)
        was_training = self.net.training
        self.net.eval()
        try:
            counts = sampler(
                expected_dead, self.formulation, (num_samples, *self.image_shape), generator=generator,
                callback=callback, device=self.device,
            )  # fmt: skip
        finally:
            self.net.train(was_training)
        maximum = self.formulation.count_max
        return (counts.clamp(max=maximum) * (2.0 / maximum) - 1.0).float()

    def prior_images(self, noise: torch.Tensor) -> torch.Tensor:
        """Where sampling starts: all-zero counts (image value -1)."""
        return torch.full_like(noise, -1.0)

    def forward_columns(
        self, images: torch.Tensor, num_columns: int, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], list[str]]:
        """``images`` thinned to ``num_columns`` process times from 0 to 1, and their labels."""
        times = [index / (num_columns - 1) for index in range(num_columns)]
        counts = self.counts_of(images).to(generator.device)
        maximum = self.formulation.count_max
        columns = [
            thin(counts, torch.full((counts.shape[0],), s, device=counts.device), generator).to(images.device)
            * (2.0 / maximum) - 1.0
            for s in times
        ]  # fmt: skip
        return columns, ["n_0"] + [f"s={s:.2f}" for s in times[1:]]

    def variational_bound(
        self, images: torch.Tensor, labels: torch.Tensor | None, levels: int, generator: torch.Generator | None
    ) -> BoundTerms:
        """The bound on -log p(counts) (:func:`~diffusion_lit.diffusion.counts.count_bound`) of
        count images, conditional on ``labels`` for a conditional model."""
        labels = labels if self.num_classes > 0 else None
        return count_bound(self.expected_dead_fn(labels, 1.0), self.counts_of(images), levels, generator)

    # -- what a count model does not have -------------------------------------------------------

    def conditional_eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        raise UserError(_GAUSSIAN_ONLY.format(what="a noise predictor (eps)"))

    def eps_fn(self, labels: torch.Tensor | None = None, guidance_scale: float | None = None) -> ModelFn:
        raise UserError(_GAUSSIAN_ONLY.format(what="this command (it calls the noise predictor)"))

    def set_guide(self, guide: DiffusionModule | None, scale: float = 2.0) -> None:
        if guide is not None:
            raise UserError(_GAUSSIAN_ONLY.format(what="autoguidance (eval.guide)"))
