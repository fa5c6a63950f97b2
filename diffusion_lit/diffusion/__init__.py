"""Pure diffusion maths (no Lightning): schedules, forward/reverse process, samplers."""

from diffusion_lit.diffusion.schedules import NoiseSchedule

__all__ = ["NoiseSchedule"]
