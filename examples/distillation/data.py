"""The distillation's data: scikit-learn's handwritten digits (they ship with it: nothing is
downloaded), each 8x8 image doubled to 16x16 in [0, 1], as records of the library's writer
(``pixels``: 256 floats, ``digit``)."""

import os

import numpy as np

DATASET = os.path.join("dataset", "distillation")
SIDE = 16


def write_data(folder: str = DATASET, count: int | None = None) -> dict[str, int]:
    """Train (three in five), validation and test records (one in five each); the counts."""
    from sklearn.datasets import load_digits

    from library import RecordWriter, example

    digits = load_digits()
    pictures = np.kron(digits.images[:count] / 16.0, np.ones((1, 2, 2))).astype(np.float32)
    writers = {
        s: RecordWriter(folder, s, num_shards=2, overwrite=True)
        for s in ("train", "validation", "test")
    }
    for index, (picture, digit) in enumerate(zip(pictures, digits.target, strict=False)):
        split = {0: "test", 1: "validation"}.get(index % 5, "train")
        writers[split].write(example({"pixels": picture.ravel(), "digit": int(digit)}))
    return {split: writer.close()["num_records"] for split, writer in writers.items()}
