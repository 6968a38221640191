"""The segmentation's data: each of scikit-learn's handwritten digits (they ship with it:
nothing is downloaded) drawn at a random size and place on a 64-px canvas with a noisy
background and a few ink dots that are not the digit; the mask is the digit's pixels (its
scaled picture, thresholded). Records of the image and the mask as PNGs (the image kit's
``serialize_image``); the test canvases and their masks also as PNG files.

No TensorFlow until records are written: ``sample_fn`` and the journey import it late.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
from PIL import Image

DATASET = os.path.join("dataset", "segmentation")
CANVAS = 64
SPLITS = ("train", "validation", "test")


def canvas(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A digit (8x8, values 0-16) on a canvas: RGB uint8 ``[64, 64, 3]`` and its mask, uint8
    ``[64, 64]``: 255 where the digit is, 0 elsewhere (dots included: they are not it)."""
    side = int(rng.integers(20, 41))
    scaled = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize(
        (side, side), Image.BICUBIC
    )
    top, left = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
    digit = np.zeros((CANVAS, CANVAS))
    digit[top : top + side, left : left + side] = np.asarray(scaled, np.float64) / 255
    # Dots of the same ink: a threshold of darkness alone cannot tell them from the digit.
    y, x = np.mgrid[0:CANVAS, 0:CANVAS]
    dots = np.zeros((CANVAS, CANVAS))
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.uniform(0, CANVAS, 2)
        radius = rng.uniform(1.5, 3.5)
        dots = np.maximum(dots, np.clip(radius + 0.5 - np.hypot(y - cy, x - cx), 0, 1))
    ink = np.maximum(digit, dots)[..., None]
    paper = rng.uniform(150, 240, 3) + rng.normal(0, 15, (CANVAS, CANVAS, 3))
    colour = rng.uniform(0, 90, 3)
    picture = (paper * (1 - ink) + colour * ink).clip(0, 255).astype(np.uint8)
    mask = np.where(digit > 0.5, 255, 0).astype(np.uint8)
    return picture, mask


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 picture or mask (lossless: a mask keeps its two values)."""
    from library.vision.records import png_bytes

    return png_bytes(pixels)


def write_data(folder: str = DATASET, count: int | None = None, seed: int = 0) -> dict[str, int]:
    """The three splits as records (one digit in five for test, one for validation, 2
    shards each and a manifest) and the test canvases as ``test_images/NNNN.png`` with their
    masks in ``test_masks/``; returns the count of each split."""
    from sklearn.datasets import load_digits

    from library import RecordWriter
    from library.vision.records import serialize_image

    digits = load_digits()
    rng = np.random.default_rng(seed)
    shutil.rmtree(folder, ignore_errors=True)
    writers = {split: RecordWriter(folder, split, num_shards=2) for split in SPLITS}
    for name in ("test_images", "test_masks"):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    total = len(digits.images) if count is None else count
    for index in range(total):
        picture, mask = canvas(digits.images[index], rng)
        split = {0: "test", 1: "validation"}.get(index % 5, "train")
        name = f"{index:04d}.png"
        image_bytes, mask_bytes = png(picture), png(mask)
        writers[split].write(serialize_image(image_bytes, name, mask=mask_bytes))
        if split == "test":
            for kind, encoded in (("test_images", image_bytes), ("test_masks", mask_bytes)):
                with open(os.path.join(folder, kind, name), "wb") as stream:
                    stream.write(encoded)
    return {split: writer.close()["num_records"] for split, writer in writers.items()}


def sample_fn(folder: str, params) -> dict:
    """A few dozen canvases (as the journey writes them) for the project's tests: training
    and evaluation records and a folder of test images to predict, at a small size."""
    write_data(folder, count=40, seed=1)
    return {
        "train_files": os.path.join(folder, "train-*.tfrecord"),
        "eval_files": os.path.join(folder, "validation-*.tfrecord"),
        "predict_files": os.path.join(folder, "test_images"),
        "image_size": 32,
        "filters": [4, 8],
    }


def baselines(masks_folder: str) -> dict[str, float]:
    """The mean IoU over background and digit of predicting all background or all digit on
    the masks of ``masks_folder``: what a model must beat to have learnt anything."""
    foreground = total = 0
    for name in sorted(os.listdir(masks_folder)):
        with Image.open(os.path.join(masks_folder, name)) as mask:
            pixels = np.asarray(mask) > 127
        foreground, total = foreground + int(pixels.sum()), total + pixels.size
    share = foreground / total
    return {"all background": (1 - share) / 2, "all foreground": share / 2}
