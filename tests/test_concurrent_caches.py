"""Two processes building the same dataset cache and the same real-feature cache at once (parallel
sweep jobs, DDP ranks) end with one valid cache, equal to what one process builds alone."""

import subprocess
import sys
import textwrap

import numpy as np
import torch

# Each process waits for the start file, then renders the triangles cache and extracts the
# real-feature cache into the shared folder, and prints the features' sum.
WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from torch import nn
    from diffusion_lit.data.triangles import TrianglesDataModule
    from diffusion_lit.lit.sample_metrics import real_features

    class MeanPixels(nn.Module):  # a stand-in feature network: no weights to download
        name, weights_sha256 = "mean_pixels", "none"
        def forward(self, images):
            return images.flatten(2).mean(-1)

    folder, start = Path(sys.argv[1]), Path(sys.argv[2])
    print("ready", flush=True)
    while not start.exists():
        time.sleep(0.01)
    data = TrianglesDataModule(data_dir=str(folder), num_images=600, image_size=16, batch_size=50)
    data.prepare_data()
    data.setup("fit")
    features = real_features(MeanPixels(), data, "train", 500, folder / "fid_features")
    print(float(features.sum()))
    """
)


def test_two_processes_writing_the_same_caches_leave_one_valid_copy(tmp_path):
    start = tmp_path / "start"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(start)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for worker in workers:  # both have imported torch and wait at the start line; then they race
        assert worker.stdout.readline().strip() == "ready"
    start.touch()
    sums = [float(worker.communicate(timeout=300)[0].split()[-1]) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert sums[0] == sums[1]

    leftovers = [path for path in tmp_path.rglob("*") if path.suffix == ".tmp"]
    assert not leftovers  # every temporary file became the cache or was removed
    (dataset_cache,) = (tmp_path / "triangles").glob("*.npz")
    (feature_cache,) = (tmp_path / "fid_features").glob("*.pt")
    with np.load(dataset_cache) as stored:
        assert stored["images"].shape == (600, 16, 16) and stored["images"].dtype == np.uint8
    cached = torch.load(feature_cache, map_location="cpu", weights_only=True)["features"]
    assert cached.shape == (500, 1) and float(cached.sum()) == sums[0]
