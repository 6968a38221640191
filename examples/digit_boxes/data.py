"""The digit_boxes' data: each of scikit-learn's handwritten digits (they ship with it: nothing
is downloaded) scaled and put at a random place on a 64-px canvas; its box is where it was
put. Records of the image (JPEG), the digit and the box through the library's writer; the
test canvases also as JPEG files with their boxes (``boxes.json``). The journey
(``__main__.py``) and the project's sample (``sample_fn``) write them.
"""

import io
import json
import os
import shutil

import numpy as np
from PIL import Image

from . import BOX_KEY

DATASET = os.path.join("dataset", "digit_boxes")
CANVAS = 64


def canvas(pixels: np.ndarray, rng) -> tuple[bytes, list[float]]:
    """A digit (8x8, 0-16) drawn dark on a noisy light canvas: JPEG bytes and its box."""
    side = int(rng.integers(16, 37))
    digit = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize(
        (side, side), Image.BICUBIC
    )
    top, left = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
    background = rng.normal(215, 20, (CANVAS, CANVAS)).clip(0, 255)
    ink = np.zeros((CANVAS, CANVAS))
    ink[top : top + side, left : left + side] = np.asarray(digit, dtype=np.float64) / 255
    picture = (background * (1 - ink) + 30 * ink).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(picture).convert("RGB").save(out, format="JPEG", quality=92)
    box = [top / CANVAS, left / CANVAS, (top + side) / CANVAS, (left + side) / CANVAS]
    return out.getvalue(), box


def make_data(folder: str = DATASET, count: int | None = None, seed: int = 0) -> dict[str, int]:
    """The three splits as records (one in five digits for test, one for validation), and
    the test canvases as files; returns the counts."""
    from sklearn.datasets import load_digits

    from library import RecordWriter, example
    from library.vision import records

    digits = load_digits()
    rng = np.random.default_rng(seed)
    shutil.rmtree(folder, ignore_errors=True)
    writers = {
        split: RecordWriter(folder, split, num_shards=2)
        for split in ("train", "validation", "test")
    }
    test_boxes = {}
    total = len(digits.images) if count is None else count
    for index in range(total):
        pixels, label = digits.images[index], int(digits.target[index])
        encoded, box = canvas(pixels, rng)
        split = {0: "test", 1: "validation"}.get(index % 5, "train")
        name = f"{index:04d}.jpg"
        writers[split].write(
            example(
                {
                    records.ENCODED: encoded,
                    records.LABEL: label,
                    BOX_KEY: box,
                    records.FILENAME: name,
                }
            )
        )
        if split == "test":
            path = os.path.join(folder, "test_images", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as stream:
                stream.write(encoded)
            test_boxes[path] = {"class": label, "box": box}
    with open(os.path.join(folder, "boxes.json"), "w", encoding="utf-8") as stream:
        json.dump(test_boxes, stream)
    return {split: writer.close()["num_records"] for split, writer in writers.items()}


def sample_fn(folder, params):
    """A few dozen canvases (as the journey writes them) for the project's tests: training
    and evaluation records and a folder of test canvases to predict, and a small model."""
    make_data(folder, count=40, seed=1)
    return {
        "train_files": os.path.join(folder, "train-*.tfrecord"),
        "eval_files": os.path.join(folder, "validation-*.tfrecord"),
        "predict_files": os.path.join(folder, "test_images"),
        "filters": [4, 8, 8],
    }
