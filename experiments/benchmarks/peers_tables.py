"""The Markdown tables of experiments/benchmarks/README.md from a ``peers.py --out`` JSON file.

python experiments/benchmarks/peers_tables.py experiments/benchmarks/results/peers_2026-12-01.json
"""

from __future__ import annotations

import json
import sys

from peers import LIBRARIES, SETTINGS, ratios, rows_of  # the script beside this one


def network_table(run: dict) -> list[str]:
    settings = [setting for setting in SETTINGS if f"ours | {setting}" in run["train_images_per_s"]]  # as measured
    header = [f"train img/s {setting}" for setting in settings] + [
        "sampling ms/step (batch 64) fp32 / best", "DDIM-50, 16 samples s (best)",
        "DDPM-1000, 16 samples s (best)", "peak RSS MB fp32 / best",
    ]  # fmt: skip
    lines = ["| network | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for library in LIBRARIES:
        train = rows_of(run["train_images_per_s"], library)
        sample = rows_of(run["sample_ms_per_step"], library)
        fastest_train, fastest_sample = max(train, key=train.get), min(sample, key=sample.get)
        cells = [f"**{train[s]}**" if s == fastest_train else f"{train[s]}" for s in settings]
        memory = rows_of(run.get("peak_rss_MB", {}), library)
        cells += [
            f"{sample['fp32']} / {sample[fastest_sample]} ({fastest_sample})",
            f"{rows_of(run['ddim50_16_samples_s'], library)[fastest_sample]}",
            f"{rows_of(run['ddpm1000_16_samples_s'], library)[fastest_sample]}",
            " / ".join(f"{value:.0f} ({setting})" for setting, value in memory.items()),
        ]
        lines.append(f"| {library} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    with open(sys.argv[1]) as file:
        runs = json.load(file)["runs"]
    for run in runs:
        params = run["params_M"]
        print(
            f"\n#### {run['size']}, {run['channels']}x32x32 — params: ours {params['ours']}M, "
            f"denoising-diffusion-pytorch {params['denoising-diffusion-pytorch']}M, diffusers {params['diffusers']}M\n"
        )
        print("\n".join(network_table(run)))
        # Runs written before peers.py stored the batch size used its default, 64.
        print("\n" + ratios(run, run.get("batch_size", 64)))


if __name__ == "__main__":
    main()
