"""An analytic test bed: a mixture of isotropic Gaussians whose noise prediction is exact at
every level of any schedule (VP timesteps, EDM's or the flow's table of sigmas, and the levels
between two of a table even in log sigma), so that a sampler's own
error can be measured apart from any network's.

With x_0 ~ sum_k w_k N(mu_k, s_k^2 I) in D dimensions and x_t = a x_0 + b eps (a = sqrt(alpha_bar_t),
b = sqrt(1 - alpha_bar_t)), x_t ~ sum_k w_k N(a mu_k, v_k I) with v_k = a^2 s_k^2 + b^2, and

    E[eps | x_t] = sum_k r_k(x_t) b (x_t - a mu_k) / v_k,
    r_k(x_t) = w_k N(x_t; a mu_k, v_k I) / sum_j w_j N(x_t; a mu_j, v_j I),

the minimiser of the eps-prediction loss, i.e. what a perfect network outputs. A sampler is
exact in the limit of many steps; at a finite step count its samples show it as the per-mode
standard deviation (too small: the last steps are too large) and the mode weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion_lit.diffusion.samplers import ModelFn
from diffusion_lit.diffusion.schedules import NoiseSchedule


@dataclass(frozen=True)
class GaussianMixture:
    """``means`` (K, D), ``stds`` (K,), ``weights`` (K,) summing to 1; float64 throughout."""

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def narrow(cls, dim: int = 16, seed: int = 0) -> GaussianMixture:
        """Three narrow modes (std 0.05, 0.075, 0.1; weights 0.5, 0.3, 0.2) at random corners of
        [-0.5, 0.5]^dim: narrow against the data range, which is where respaced samplers fail."""
        generator = torch.Generator().manual_seed(seed)
        signs = torch.randint(0, 2, (3, dim), generator=generator).double() * 2.0 - 1.0
        return cls(0.5 * signs, torch.tensor([0.05, 0.075, 0.1]).double(), torch.tensor([0.5, 0.3, 0.2]).double())

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, count: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0 (count, D), the mode of each) drawn from the mixture."""
        modes = torch.multinomial(self.weights, count, replacement=True, generator=generator)
        noise = torch.randn(count, self.dim, generator=generator, dtype=torch.float64)
        return self.means[modes] + self.stds[modes, None] * noise, modes

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """E[eps | x_t] (module docstring) for x_t (B, D) at per-sample alpha_bar (B,)."""
        x = x_t.double()
        a = alpha_bar.double().sqrt()[:, None, None]  # (B, 1, 1)
        b2 = (1.0 - alpha_bar.double())[:, None, None]
        variances = a**2 * self.stds[None, :, None] ** 2 + b2  # (B, K, 1)
        offsets = x[:, None, :] - a * self.means[None]  # (B, K, D)
        log_likelihood = (
            self.weights.log()[None]
            - 0.5 * self.dim * variances[..., 0].log()
            - 0.5 * (offsets**2).sum(-1) / variances[..., 0]
        )
        responsibilities = log_likelihood.softmax(dim=1)[..., None]  # (B, K, 1)
        return (responsibilities * b2.sqrt() * offsets / variances).sum(1)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """E[eps - x_0 | x] for the flow x = (1 - t) x_0 + t eps, x (B, D), t (B,) in (0, 1): per mode
        x ~ N((1 - t) mu_k, v_k I) with v_k = (1 - t)^2 s_k^2 + t^2, and by Gaussian conditioning
        E[x_0 | x, k] = mu_k + (1 - t) s_k^2 (x - (1 - t) mu_k) / v_k, E[eps | x, k] = t (x - (1 - t) mu_k) / v_k,
        averaged with the responsibilities r_k(x) (written apart from :meth:`eps`, so that the two
        check each other through the flow samplers' conversion)."""
        x = x.double()
        keep = (1.0 - t.double())[:, None, None]  # (B, 1, 1)
        noise_level = t.double()[:, None, None]
        variances = keep**2 * self.stds[None, :, None] ** 2 + noise_level**2  # (B, K, 1)
        offsets = x[:, None, :] - keep * self.means[None]  # (B, K, D)
        log_likelihood = (
            self.weights.log()[None]
            - 0.5 * self.dim * variances[..., 0].log()
            - 0.5 * (offsets**2).sum(-1) / variances[..., 0]
        )
        responsibilities = log_likelihood.softmax(dim=1)[..., None]
        x0 = self.means[None] + keep * self.stds[None, :, None] ** 2 * offsets / variances
        eps = noise_level * offsets / variances
        return (responsibilities * (eps - x0)).sum(1)

    def model_fn(self, schedule: NoiseSchedule) -> ModelFn:
        """The exact noise predictor on images (B, C, H, W) with C H W = D, at timestep indices."""

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # alpha_bar in float64 from sigma: float32 alphas_bar near 1 loses the few-percent
            # precision of 1 - alpha_bar at EDM's smallest sigma. Fractional t: a level between two.
            sigma = schedule.sigma_at(t.cpu()).double()
            return self.eps(x.flatten(1), 1.0 / (1.0 + sigma**2)).reshape(x.shape).to(x.dtype)

        return model_fn

    def assess(self, samples: torch.Tensor) -> dict[str, list[float]]:
        """Per mode (nearest mean): the samples' std over the mode's points divided by the
        mode's std, and the share of samples; for ``samples`` (N, D)."""
        x = samples.double().flatten(1)
        nearest = torch.cdist(x, self.means).argmin(dim=1)
        std_ratios, shares = [], []
        for k in range(len(self.weights)):
            members = x[nearest == k]
            shares.append(len(members) / len(x))
            spread = (members - self.means[k]).pow(2).mean().sqrt() if len(members) else torch.tensor(0.0)
            std_ratios.append(float(spread / self.stds[k]))
        return {"std_ratio": std_ratios, "share": shares}
