"""The Markdown tables of experiments/benchmarks/README.md from a ``peers.py --out`` JSON file.

python experiments/benchmarks/peers_tables.py experiments/benchmarks/results/peers_2026-12-01.json
"""

from __future__ import annotations

import json
import sys

LIBRARIES = ("ours", "denoising-diffusion-pytorch", "diffusers")
SETTINGS = ("fp32", "bf16", "channels_last", "bf16+cl")
PEERS = LIBRARIES[1:]


def rows_of(table: dict, library: str) -> dict[str, float]:
    """``setting -> value`` of one library in a ``"library | setting" -> value`` table."""
    return {key.split(" | ")[1]: value for key, value in table.items() if key.startswith(library + " |")}


def network_table(run: dict) -> list[str]:
    header = [f"train img/s {setting}" for setting in SETTINGS] + [
        "sampling ms/step (batch 64) fp32 / best", "DDIM-50, 16 samples s (best)",
        "DDPM-1000, 16 samples s (best)", "peak RSS MB fp32 / best",
    ]  # fmt: skip
    lines = ["| network | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for library in LIBRARIES:
        train = rows_of(run["train_images_per_s"], library)
        sample = rows_of(run["sample_ms_per_step"], library)
        fastest_train, fastest_sample = max(train, key=train.get), min(sample, key=sample.get)
        cells = [f"**{train[s]}**" if s == fastest_train else f"{train[s]}" for s in SETTINGS]
        memory = rows_of(run.get("peak_rss_MB", {}), library)
        cells += [
            f"{sample['fp32']} / {sample[fastest_sample]} ({fastest_sample})",
            f"{rows_of(run['ddim50_16_samples_s'], library)[fastest_sample]}",
            f"{rows_of(run['ddpm1000_16_samples_s'], library)[fastest_sample]}",
            " / ".join(f"{value:.0f} ({setting})" for setting, value in memory.items()),
        ]
        lines.append(f"| {library} | " + " | ".join(cells) + " |")
    return lines


def ratios(run: dict, batch_size: int = 64) -> str:
    train, sample = run["train_images_per_s"], run["sample_ms_per_step"]
    fp32_peer = max(train[f"{peer} | fp32"] for peer in PEERS)
    best_train = {library: max(rows_of(train, library).values()) for library in LIBRARIES}
    best_sample = {library: min(rows_of(sample, library).values()) for library in LIBRARIES}
    gflop = run["ours_train_gflop_per_step"]
    bf16_gflops = gflop * max(train["ours | bf16"], train["ours | bf16+cl"]) / batch_size
    fp32_gflops, fp32_peak, bf16_peak = (
        run["ours_achieved_gflops_fp32"], run["matmul_peak_gflops_fp32"], run["matmul_peak_gflops_bf16"],
    )  # fmt: skip
    return (
        f"Ratios: train fp32 ours/faster peer {train['ours | fp32'] / fp32_peer:.2f}x; "
        f"best/best {best_train['ours'] / max(best_train[peer] for peer in PEERS):.2f}x; "
        f"sampling step best/best {min(best_sample[peer] for peer in PEERS) / best_sample['ours']:.2f}x; "
        f"fp32 sampling step {min(sample[f'{peer} | fp32'] for peer in PEERS) / sample['ours | fp32']:.2f}x. "
        f"FLOPs/step {gflop} GFLOP; achieved fp32 {fp32_gflops} GFLOP/s = {fp32_gflops / fp32_peak:.0%} of "
        f"fp32 matmul peak {fp32_peak}; bf16 best {bf16_gflops:.1f} GFLOP/s = {bf16_gflops / bf16_peak:.0%} "
        f"of bf16 peak {bf16_peak}"
    )


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
        print("\n" + ratios(run))


if __name__ == "__main__":
    main()
