"""A few images of a learnable two-class task made on the spot (stripes running one way or the
other), converted as ``convert_dataset.py`` converts a user's folders: the sample data of an
image project's tests (its ``sample_fn``), made offline in a second."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

CLASSES = ("horizontal", "vertical")


def write_class_tree(
    root: str,
    classes: Sequence[str] = CLASSES,
    per_class: int = 6,
    size: int = 40,
    seed: int = 0,
) -> str:
    """``root/<class>/<class>_<i>.jpg``: stripes along the rows for the first class, along the
    columns for the others, at random periods, phases and colours. Returns ``root``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    for label, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for index in range(per_class):
            phase, period = rng.uniform(0, 6.28), rng.uniform(4, 8)
            wave = np.sin(2 * np.pi * (y if label == 0 else x) / period + phase)
            pixels = (0.5 + 0.5 * wave[..., None]) * rng.uniform(60, 255, 3)
            image = Image.fromarray(pixels.astype(np.uint8), "RGB")
            image.save(os.path.join(root, name, f"{name}_{index}.jpg"), quality=95)
    return root


def write_sample(folder: str, per_class: int = 16, size: int = 40) -> dict[str, str]:
    """Training and evaluation records of the two classes (the kit's converter, with their
    labels file) and a folder of images to predict, under ``folder``; returns the keys that
    point a run at them (``train_files``, ``eval_files``, ``predict_files``)."""
    from library.vision.convert import ConvertOptions, convert

    keys = {}
    for split, count, seed in (("train", per_class, 1), ("eval", max(2, per_class // 2), 2)):
        images = write_class_tree(
            os.path.join(folder, "images", split), per_class=count, size=size, seed=seed
        )
        records = os.path.join(folder, "records")
        convert(ConvertOptions(images, split, records, num_shards=2, num_workers=1))
        keys[f"{split}_files"] = os.path.join(records, f"{split}-*.tfrecord")
    predict = write_class_tree(os.path.join(folder, "predict"), per_class=2, size=size, seed=3)
    keys["predict_files"] = f"{predict}/*/*.jpg"
    return keys
