"""The real-image data modules (MNIST, CIFAR-10, folders/cats) on files in their real formats."""

from __future__ import annotations

import functools
import http.server
import io
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_lit.data import mnist as mnist_module
from diffusion_lit.data.base import split_indices, subset_index
from diffusion_lit.data.cifar10 import CIFAR10DataModule
from diffusion_lit.data.folder import ImageFolderDataModule
from diffusion_lit.data.formats import CIFAR10_CLASSES, write_cifar10, write_mnist
from diffusion_lit.data.in_memory import InMemoryImageDataModule, InMemoryImageDataset, SkippedFilesWarning
from diffusion_lit.data.mnist import MNISTDataModule
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import file_sha256 as sha256_of
from tests.conftest import REPO_ROOT, SHARED_DATASETS, run_cli


def _tiny_mnist_arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    return train, np.arange(40) % 10, test, np.arange(12) % 10


@pytest.fixture
def tiny_mnist_root(tmp_path):
    root = tmp_path / "mnist_root"
    write_mnist(root, *_tiny_mnist_arrays())
    return root


def _setup(module: InMemoryImageDataModule) -> InMemoryImageDataModule:
    module.prepare_data()
    module.setup("fit")
    return module


# -- MNIST ------------------------------------------------------------------------------------


def test_mnist_items_are_the_idx_pixels_scaled_to_minus_one_one(tmp_path, tiny_mnist_root):
    train, train_labels, test, test_labels = _tiny_mnist_arrays()
    module = _setup(MNISTDataModule(str(tmp_path / "data"), root=str(tiny_mnist_root), download=False))
    assert (module.num_channels, module.image_size, module.num_classes) == (1, 28, 10)
    assert len(module.train_set) == 40 and len(module.val_set) == 12
    image, label = module.train_set[7]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    torch.testing.assert_close(image[0], torch.from_numpy(train[7]).float() / 127.5 - 1.0)
    assert int(label) == train_labels[7]
    image, label = module.val_set[3]
    torch.testing.assert_close(image[0], torch.from_numpy(test[3]).float() / 127.5 - 1.0)
    assert int(label) == test_labels[3]


def test_mnist_batches_from_the_real_files(tmp_path, each_mnist_root):
    module = _setup(
        MNISTDataModule(str(tmp_path / "data"), root=str(each_mnist_root), num_val_samples=10, batch_size=32)
    )
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and labels.shape == (32,) and labels.dtype == torch.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert len(module.val_set) == 10
    if each_mnist_root != SHARED_DATASETS:  # the stand-in: 1,200 + 300 seven-segment digits, classes in turn
        assert len(module.train_set) == 1200 and torch.bincount(module.train_set.labels).tolist() == [120] * 10
    else:  # the published set: 60,000 + 10,000 images, all ten digits
        assert len(module.train_set) == 60000
        assert torch.bincount(module.train_set.labels).tolist() == [
            5923,
            6742,
            5958,
            6131,
            5842,
            5421,
            5918,
            6265,
            5851,
            5949,
        ]
        # Digits are white strokes on black: most pixels are background (-1).
        assert (module.train_set.images == 0).float().mean() > 0.75


def test_mnist_resize_and_edges_options(tmp_path, tiny_mnist_root):
    module = _setup(
        MNISTDataModule(
            str(tmp_path / "data"), root=str(tiny_mnist_root), download=False, image_size=16, transform="edges"
        )
    )
    image, _ = module.train_set[0]
    assert image.shape == (1, 16, 16)
    # Edge maps are scaled so each image's strongest edge is white.
    assert module.train_set.images.flatten(1).amax(1).eq(255).all()


def test_mnist_missing_files_error_names_files_and_folder(tmp_path):
    module = MNISTDataModule(str(tmp_path / "data"), root=str(tmp_path / "empty"), download=False)
    with pytest.raises(UserError) as info:
        module.prepare_data()
    message = str(info.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]:
        assert name in message
    assert "data.download=false" in message


def test_mnist_failed_download_reports_the_network_error(tmp_path, monkeypatch):
    class OfflineMNIST:
        def __init__(self, root, train=True, download=False):
            print("Downloading https://example.invalid/train-images-idx3-ubyte.gz")  # chatter is captured
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nName or service not known")

    monkeypatch.setattr(mnist_module, "MNIST", OfflineMNIST)
    module = MNISTDataModule(str(tmp_path / "data"), root=str(tmp_path / "empty"), download=True)
    with pytest.raises(UserError, match=r"could not be downloaded \(Name or service not known\)"):
        module.prepare_data()


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path, tiny_mnist_root, monkeypatch):
    data_dir = str(tmp_path / "data")
    first = _setup(MNISTDataModule(data_dir, root=str(tiny_mnist_root), download=False))
    cache_files = sorted((tmp_path / "data" / "cache" / "mnist").glob("*.pt"))
    assert [p.name.split("_")[0] for p in cache_files] == ["test", "train"]

    def no_decoding(self, split):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(MNISTDataModule, "_decode", no_decoding)
    second = _setup(MNISTDataModule(data_dir, root=str(tiny_mnist_root), download=False))
    assert torch.equal(first.train_set.images, second.train_set.images)

    # A changed source file (new modification time) must not be served from the old cache.
    images_file = tiny_mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    stat = images_file.stat()
    os.utime(images_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        _setup(MNISTDataModule(data_dir, root=str(tiny_mnist_root), download=False))


def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path, tiny_mnist_root):
    data_dir = str(tmp_path / "data")
    _setup(MNISTDataModule(data_dir, root=str(tiny_mnist_root), download=False))
    for path in (tmp_path / "data" / "cache" / "mnist").glob("train_*.pt"):
        path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable dataset cache"):
        module = _setup(MNISTDataModule(data_dir, root=str(tiny_mnist_root), download=False))
    assert len(module.train_set) == 40


def test_subsets_are_seeded_and_independent_of_the_batch_size(tmp_path, tiny_mnist_root):
    def subset(seed, batch_size=8):
        module = MNISTDataModule(
            str(tmp_path / "data"),
            root=str(tiny_mnist_root),
            download=False,
            num_samples=10,
            num_val_samples=5,
            seed=seed,
            batch_size=batch_size,
        )
        return _setup(module)

    a, b, c = subset(0), subset(0, batch_size=3), subset(1)
    assert len(a.train_set) == 10 and len(a.val_set) == 5
    assert torch.equal(a.train_set.images, b.train_set.images) and torch.equal(a.val_set.labels, b.val_set.labels)
    assert not torch.equal(a.train_set.images, c.train_set.images)


def test_bad_options_are_rejected(tmp_path):
    with pytest.raises(UserError, match="data.transform must be one of"):
        MNISTDataModule(str(tmp_path), transform="blur")
    with pytest.raises(UserError, match="data.num_samples must be an integer >= 1"):
        MNISTDataModule(str(tmp_path), num_samples=0)
    with pytest.raises(UserError, match="data.path is not set"):
        ImageFolderDataModule(str(tmp_path), path=None)


def test_split_and_subset_indices_are_seeded_disjoint_and_complete():
    train, val = split_indices(100, 0.1, seed=3)
    assert len(train) == 90 and len(val) == 10
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    again_train, again_val = split_indices(100, 0.1, seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert not torch.equal(val, split_indices(100, 0.1, seed=4)[1])
    assert len(split_indices(5, 0.01, seed=0)[1]) == 1  # a positive fraction holds out at least one
    subset = subset_index(50, 7, seed=1)
    assert len(set(subset.tolist())) == 7 and torch.equal(subset, subset.sort().values)
    assert torch.equal(subset, subset_index(50, 7, seed=1))


# -- in-memory dataset --------------------------------------------------------------------------


def test_batched_fetch_equals_item_fetch_and_flips_are_mirror_images():
    pixels = torch.randint(0, 256, (6, 1, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6)
    dataset = InMemoryImageDataset(pixels, labels)
    batch = dataset.__getitems__([4, 1, 1])
    for (image, label), index in zip(batch, [4, 1, 1], strict=True):
        expected_image, expected_label = dataset[index]
        assert torch.equal(image, expected_image) and int(label) == int(expected_label)

    flipping = InMemoryImageDataset(pixels, hflip=True)
    torch.manual_seed(0)
    items = flipping.__getitems__(list(range(6)) * 20)
    plain = [pixels[i % 6].float() / 127.5 - 1 for i in range(120)]
    flipped = [torch.equal(item, p.flip(-1)) and not torch.equal(item, p) for item, p in zip(items, plain, strict=True)]
    same = [torch.equal(item, p) for item, p in zip(items, plain, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 30 < sum(flipped) < 90  # about half of 120


# -- CIFAR-10 ---------------------------------------------------------------------------------


def _tiny_cifar(root: Path):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, size=(25, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    train_labels, test_labels = np.arange(25) % 10, (np.arange(10) * 3) % 10
    write_cifar10(root, train, train_labels, test, test_labels)
    return train, train_labels, test, test_labels


def test_cifar10_reads_the_python_pickle_format(tmp_path):
    train, train_labels, test, test_labels = _tiny_cifar(tmp_path / "root")
    module = _setup(
        CIFAR10DataModule(str(tmp_path / "data"), root=str(tmp_path / "root"), verify_checksums=False, hflip=False)
    )
    assert (module.num_channels, module.image_size, module.classes) == (3, 32, CIFAR10_CLASSES)
    assert len(module.train_set) == 25 and len(module.val_set) == 10
    image, label = module.train_set[11]
    expected = torch.from_numpy(train[11]).permute(2, 0, 1).float() / 127.5 - 1.0  # HWC -> CHW
    torch.testing.assert_close(image, expected)
    assert int(label) == train_labels[11]
    assert module.val_set.labels.tolist() == test_labels.tolist()


def test_cifar_standin_script_writes_a_set_the_cifar10_loader_reads(tmp_path):
    # experiments/mnist_fast/cifar_standin.py: crops of a photograph in the CIFAR-10 file format.
    script = REPO_ROOT / "experiments" / "mnist_fast" / "cifar_standin.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "root"), "--train", "30", "--test", "10"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    module = _setup(
        CIFAR10DataModule(str(tmp_path / "data"), root=str(tmp_path / "root"), verify_checksums=False, hflip=False)
    )
    assert len(module.train_set) == 30 and len(module.val_set) == 10
    images = torch.stack([module.train_set[index][0] for index in range(30)])
    assert images.shape == (30, 3, 32, 32)
    # A photograph, not noise: neighbouring pixels are strongly correlated, and colour varies.
    neighbours = torch.corrcoef(torch.stack([images[..., :-1].flatten(), images[..., 1:].flatten()]))[0, 1]
    assert neighbours > 0.8 and images.std() > 0.2


def test_cifar10_grayscale_matches_pil_luma(tmp_path):
    train, *_ = _tiny_cifar(tmp_path / "root")
    module = _setup(
        CIFAR10DataModule(
            str(tmp_path / "data"), root=str(tmp_path / "root"), verify_checksums=False, grayscale=True, image_size=16
        )
    )
    assert module.num_channels == 1 and module.train_set.images.shape == (25, 1, 16, 16)
    full_size = _setup(
        CIFAR10DataModule(str(tmp_path / "data"), root=str(tmp_path / "root"), verify_checksums=False, grayscale=True)
    )
    luma = np.asarray(Image.fromarray(train[0]).convert("L"))
    difference = np.abs(full_size.train_set.images[0, 0].numpy().astype(int) - luma.astype(int))
    assert difference.max() <= 1  # rounding only


def test_cifar10_checksums_and_missing_files(tmp_path):
    _tiny_cifar(tmp_path / "root")
    module = CIFAR10DataModule(str(tmp_path / "data"), root=str(tmp_path / "root"), download=False)
    with pytest.raises(UserError, match="verify_checksums=false"):  # not the published files
        module.prepare_data()
    missing = CIFAR10DataModule(str(tmp_path / "data"), root=str(tmp_path / "nothing"), download=False)
    with pytest.raises(UserError) as info:
        missing.prepare_data()
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and "data_batch_1" in message and "batches.meta" in message
    assert str(tmp_path / "nothing" / "cifar-10-batches-py") in message


# -- folders and cats -------------------------------------------------------------------------


def _save(path: Path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _image_folder(root: Path) -> None:
    """Seven usable images in several formats, modes and sizes, nested, plus three bad files."""
    rng = np.random.default_rng(2)

    def rgb(h, w):
        return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))

    _save(root / "a.png", rgb(40, 40))
    _save(root / "b.jpg", rgb(50, 80), quality=90)
    _save(root / "nested" / "deeper" / "c.webp", rgb(30, 30))
    _save(root / "nested" / "d.png", rgb(64, 32).convert("RGBA"))
    _save(root / "nested" / "e.bmp", rgb(20, 20).convert("L"))
    _save(root / "f.png", Image.fromarray(rng.integers(0, 65536, size=(24, 24), dtype=np.uint16)))
    _save(root / "g.gif", rgb(24, 24).convert("P"))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    buffer = io.BytesIO()
    rgb(40, 40).save(buffer, format="PNG")
    (root / "nested" / "truncated.png").write_bytes(buffer.getvalue()[:200])
    (root / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"hidden files are ignored silently")


def test_folder_skips_bad_files_with_one_warning(tmp_path):
    _image_folder(tmp_path / "images")
    module = ImageFolderDataModule(
        str(tmp_path / "data"), path=str(tmp_path / "images"), image_size=16, val_fraction=0.2
    )
    with pytest.warns(SkippedFilesWarning) as record:
        _setup(module)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 3 file(s)" in message
    assert "broken.jpg" in message and "truncated.png" in message and "notes.txt" in message
    assert ".DS_Store" not in message
    assert len(module.train_set) + len(module.val_set) == 7 and len(module.val_set) == 1
    image = module.train_set[0]  # unlabelled: bare images
    assert isinstance(image, torch.Tensor) and image.shape == (3, 16, 16)
    assert module.num_classes is None


def test_folder_with_nothing_usable_stops_with_a_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_bytes(b"garbage")
    module = ImageFolderDataModule(str(tmp_path / "data"), path=str(tmp_path / "images"))
    with pytest.raises(UserError, match=r"none of the 1 files under .* is a usable image"):
        module.prepare_data()


def test_folder_resize_keeps_the_centre_and_grayscale_has_one_channel(tmp_path):
    # A 60 x 20 (w x h) image: left third black, middle third white, right third black.
    pixels = np.zeros((20, 60), dtype=np.uint8)
    pixels[:, 20:40] = 255
    _save(tmp_path / "images" / "wide.png", Image.fromarray(pixels).convert("RGB"))
    _save(tmp_path / "images" / "other.png", Image.fromarray(pixels).convert("RGB"))
    module = _setup(
        ImageFolderDataModule(str(tmp_path / "data"), path=str(tmp_path / "images"), image_size=10, grayscale=True)
    )
    stored = module.train_set.images[0, 0]
    assert module.num_channels == 1 and stored.shape == (10, 10)
    # Shorter side 20 -> 10 (scale 1/2), width 60 -> 30, centre 10 columns = the white band;
    # the antialiasing filter blends the outermost columns a little with the black thirds.
    assert (stored[:, 1:9] == 255).all()
    assert torch.equal(stored[:, 0], stored[:, 9]) and (stored[:, 0] > 192).all()


def test_folder_class_subfolders_give_labels(tmp_path):
    rng = np.random.default_rng(3)
    for name, count in [("dog", 2), ("cat", 3)]:
        for i in range(count):
            _save(
                tmp_path / "images" / name / f"{i}.png",
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)),
            )
    _save(tmp_path / "images" / "loose.png", Image.new("RGB", (8, 8)))
    module = ImageFolderDataModule(
        str(tmp_path / "data"), path=str(tmp_path / "images"), image_size=8, class_subfolders=True, val_fraction=0.0
    )
    with pytest.warns(SkippedFilesWarning, match="loose.png: not inside a class subfolder"):
        _setup(module)
    assert module.classes == ["cat", "dog"]
    assert sorted(module.train_set.labels.tolist()) == [0, 0, 0, 1, 1]
    image, label = module.train_set[0]
    assert image.shape == (3, 8, 8) and label.dtype == torch.int64


def test_cats_config_error_points_to_public_datasets(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from diffusion_lit.utils.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=cats", f"paths.data_dir={tmp_path}"])
    module = instantiate(cfg.data)
    assert (module.num_channels, module.image_size, module.hflip) == (1, 28, True)
    with pytest.raises(UserError) as info:
        module.prepare_data()
    message = str(info.value)
    assert f"{tmp_path / 'cats'} does not exist" in message and "AFHQ" in message and "data.url" in message


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/served over HTTP on localhost: the real download path, no internet."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass


def test_folder_downloads_and_checks_an_archive(tmp_path, http_server):
    served, base_url = http_server
    rng = np.random.default_rng(4)
    archive = served / "cats.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for i in range(3):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buffer, format="PNG")
            zipped.writestr(f"cats/{i}.png", buffer.getvalue())
    url = f"{base_url}/cats.zip"

    wrong = ImageFolderDataModule(str(tmp_path / "data"), path=str(tmp_path / "unpacked"), url=url, sha256="0" * 64)
    with pytest.raises(UserError, match="SHA-256"):
        wrong.prepare_data()
    assert not (tmp_path / "data" / "downloads" / "cats.zip").exists()  # the bad download is removed

    module = ImageFolderDataModule(
        str(tmp_path / "data"), path=str(tmp_path / "unpacked"), url=url, sha256=sha256_of(archive), image_size=8
    )
    _setup(module)
    assert len(module.train_set) + len(module.val_set) == 3


def test_folder_unreachable_url_says_where_to_put_the_archive(tmp_path, http_server):
    _, base_url = http_server
    module = ImageFolderDataModule(
        str(tmp_path / "data"), path=str(tmp_path / "unpacked"), url=f"{base_url}/absent.zip"
    )
    with pytest.raises(UserError, match=r"could not download .*absent.zip .*put it at"):
        module.prepare_data()


# -- every dataset trains through the CLI ---------------------------------------------------------


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "folder", "cats"])
def test_smoke_train_on_each_dataset(dataset, tmp_path, mnist_root):
    if dataset == "mnist":
        options = [f"data.root={mnist_root}", "data.num_val_samples=32"]
    elif dataset == "cifar10":
        _tiny_cifar(tmp_path / "cifar")
        options = [f"data.root={tmp_path / 'cifar'}", "data.verify_checksums=false"]
    else:
        rng = np.random.default_rng(5)
        for i in range(40):
            _save(
                tmp_path / "images" / f"{i % 3}" / f"{i}.png",
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)),
            )
        options = [f"data.path={tmp_path / 'images'}"]
    result = run_cli(
        "diffusion_lit.train",
        "model=tiny",
        "debug=smoke",
        f"data={dataset}",
        *options,
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert "val_loss" in result.stdout
    assert (tmp_path / "run" / "samples_final.png").is_file()
    config = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    assert f"diffusion_lit.data.{ {'cats': 'folder'}.get(dataset, dataset) }." in config


def test_folder_without_a_path_says_which_option_to_set(tmp_path):
    result = run_cli("diffusion_lit.train", "model=tiny", "debug=smoke", "data=folder", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "data.path must be set: add data.path=... to the command line." in result.stderr
    assert "Traceback" not in result.stderr
