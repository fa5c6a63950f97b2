"""A stand-in for MNIST when ../shared/datasets is absent (a user's fresh clone): seven-segment
digits, each class its own set of segments, jittered in position, stroke width and brightness,
so that a classifier can learn the labels and the tests that score digits keep their signal."""

import numpy as np

# Segments of a seven-segment display: a top, b upper right, c lower right, d bottom,
# e lower left, f upper left, g middle.
SEGMENTS = {
    0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg",
    5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg", 9: "abcdfg",
}  # fmt: skip


def standin_digits(labels: np.ndarray, seed: int = 0, size: int = 28) -> np.ndarray:
    """uint8 images (N, size, size) of the digits ``labels`` (N,), white on black like MNIST."""
    rng = np.random.default_rng(seed)
    images = np.zeros((len(labels), size, size), dtype=np.float32)
    for image, label in zip(images, labels, strict=True):
        dx, dy = rng.integers(-3, 4, size=2)
        width, height = rng.integers(9, 13), rng.integers(16, 21)
        stroke = int(rng.integers(2, 4))
        left, top = (size - width) // 2 + dx, (size - height) // 2 + dy
        right, bottom, middle = left + width, top + height, top + height // 2
        boxes = {
            "a": (top, top + stroke, left, right), "d": (bottom - stroke, bottom, left, right),
            "g": (middle - stroke // 2, middle - stroke // 2 + stroke, left, right),
            "f": (top, middle + 1, left, left + stroke), "b": (top, middle + 1, right - stroke, right),
            "e": (middle, bottom, left, left + stroke), "c": (middle, bottom, right - stroke, right),
        }  # fmt: skip
        for segment in SEGMENTS[int(label)]:
            y0, y1, x0, x1 = boxes[segment]
            image[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = rng.uniform(180, 255)
    images += rng.normal(0.0, 12.0, images.shape)
    return images.clip(0, 255).astype(np.uint8)


def standin_mnist(num_train: int = 600, num_test: int = 300, seed: int = 0):
    """(train images, train labels, test images, test labels) in the shapes and dtypes of the
    IDX files (``diffusion_lit.data.formats.write_mnist`` writes them); classes in turn."""
    train_labels = (np.arange(num_train) % 10).astype(np.uint8)
    test_labels = (np.arange(num_test) % 10).astype(np.uint8)
    return (
        standin_digits(train_labels, seed), train_labels, standin_digits(test_labels, seed + 1), test_labels
    )  # fmt: skip
