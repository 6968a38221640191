"""The GAN's data: scikit-learn's handwritten digits (they ship with it: nothing is downloaded),
each 8x8 image doubled to 16x16 and scaled to [-1, 1], as records of the library's writer
(``pixels``: 256 floats; ``digit``: what it is, unused by the GAN)."""

import os

import numpy as np

DATASET = os.path.join("dataset", "gan")
SIDE = 16


def images(count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, 16, 16] in [-1, 1], digits [n])``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images[:count] / 16.0 * 2.0 - 1.0
    doubled = np.kron(pixels, np.ones((1, 2, 2)))
    return doubled.astype(np.float32), digits.target[:count]


def write_data(folder: str = DATASET, count: int | None = None) -> dict[str, int]:
    """Train (four in five) and validation records; returns the counts."""
    from library import RecordWriter, example

    pictures, digits = images(count)
    counts = {}
    for split, keep in (("train", lambda i: i % 5 != 0), ("validation", lambda i: i % 5 == 0)):
        writer = RecordWriter(folder, split, num_shards=2, overwrite=True)
        for index, (picture, digit) in enumerate(zip(pictures, digits, strict=True)):
            if keep(index):
                writer.write(example({"pixels": picture.ravel(), "digit": int(digit)}))
        counts[split] = writer.close()["num_records"]
    return counts
