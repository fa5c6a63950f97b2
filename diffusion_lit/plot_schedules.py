"""Plot noise schedules side by side: beta_t, alpha_bar_t and log-SNR against t / T.

    python -m diffusion_lit.plot_schedules linear cosine sine power:power=10 --out schedules.png
    python -m diffusion_lit.plot_schedules schedule=linear,cosine,sigmoid

Each positional argument is a conf/schedule option, optionally followed by ``:key=value,...``
overrides of that config (so the curves are exactly the schedules training would use). The
three panels are those of the thesis' figure 5.1 (seed 001) plus the log-SNR, which makes the
schedules' differences visible where alpha_bar is near 0 or 1 (seed 003).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import MissingConfigException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from diffusion_lit.utils.console import console  # noqa: E402
from diffusion_lit.utils.errors import (
    UserError,  # noqa: E402
    report_user_errors,  # noqa: E402
)
from diffusion_lit.utils.files import atomic_write  # noqa: E402
from diffusion_lit.utils.paths import CONFIG_DIR  # noqa: E402


def schedule_options() -> list[str]:
    return sorted(path.stem for path in (Path(CONFIG_DIR) / "schedule").glob("*.yaml"))


def load_betas(spec: str, num_timesteps: int | None) -> tuple[str, np.ndarray]:
    """(label, betas) for a spec ``name`` or ``name:key=value,key=value``."""
    name, _, options = spec.partition(":")
    overrides = [f"schedule={name}"] + [f"schedule.{item}" for item in options.split(",") if item]
    if num_timesteps is not None:
        overrides.append(f"schedule.num_timesteps={num_timesteps}")
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    except MissingConfigException:
        raise UserError(f"unknown schedule {name!r}; choose from {schedule_options()}.") from None
    except Exception as err:  # bad override syntax or key
        raise UserError(f"could not read schedule spec {spec!r}: {err}") from None
    return spec, np.asarray(instantiate(cfg.schedule), dtype=np.float64)


def plot_schedules(specs: list[str], out: Path, num_timesteps: int | None = None) -> Path:
    """Draw the three panels for every schedule spec into ``out`` (PNG)."""
    if not specs:
        raise UserError(f"name at least one schedule, e.g. linear cosine; options: {schedule_options()}.")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for spec in specs:
        label, betas = load_betas(spec, num_timesteps)
        alphas_bar = np.cumprod(1.0 - betas)
        u = (np.arange(len(betas)) + 1) / len(betas)
        axes[0].plot(u, betas, label=label)
        axes[1].plot(u, alphas_bar, label=label)
        axes[2].plot(u, np.log(alphas_bar) - np.log1p(-alphas_bar), label=label)
    titles = [r"$\beta_t$", r"$\bar\alpha_t$", r"log-SNR $= \log(\bar\alpha_t / (1 - \bar\alpha_t))$"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("t / T")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    with atomic_write(out) as file:
        fig.savefig(file, format="png", dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m diffusion_lit.plot_schedules", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "schedules", nargs="*", help=f"schedule specs NAME[:key=value,...]; NAME in {schedule_options()}"
    )
    parser.add_argument("--out", type=Path, default=Path("schedules.png"), help="output PNG (default: schedules.png)")
    parser.add_argument("--num-timesteps", type=int, default=None, help="T for every schedule (default: each config's)")
    args = parser.parse_args(argv)
    # Also accept the Hydra-sweep spelling schedule=linear,cosine,... of the train command.
    specs = [spec for arg in args.schedules for spec in (arg.removeprefix("schedule=").split(",")
             if arg.startswith("schedule=") else [arg])]  # fmt: skip
    out = report_user_errors(lambda: plot_schedules(specs, args.out, args.num_timesteps))
    console.print(f"wrote {out}", highlight=False)


if __name__ == "__main__":
    main(sys.argv[1:])
