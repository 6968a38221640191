"""Shared fixtures: small image trees and TFRecords made by the project's own writer."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_params(**overrides):
    """Every key's default (run options and this project's hyperparameters), overridden."""
    from library.config import default_params
    from project.hyperparameters import HYPERPARAMETERS

    return default_params(HYPERPARAMETERS, **overrides)


def plan_for(train_steps, steps_per_epoch=10):
    """A plan of ``train_steps`` steps for tests that build an optimizer by hand."""
    from library.schedule import Plan

    return Plan(steps_per_epoch, train_steps, train_steps, train_steps, train_steps)


def run_script(script, *argv, cwd=ROOT, timeout=300):
    """Runs one of the project's entry scripts as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def textured_image(width, height, seed, mode="RGB"):
    """An image with real structure (gradients, stripes, a blob), not flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frequency = rng.uniform(0.05, 0.3)
    channels = [
        127 + 120 * np.sin(frequency * (x * np.cos(a) + y * np.sin(a)))
        for a in rng.uniform(0, np.pi, 3)
    ]
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    blob = 80 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.05 * width * height))
    pixels = np.clip(np.stack(channels, -1) + blob[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def save(image, path, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **kwargs)
    return path


def jpeg_bytes(image):
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_class_tree(root, classes=("horizontal", "vertical"), per_class=6, size=40, seed=0):
    """A learnable two-class tree: stripes running one way or the other, varied colours."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        for i in range(per_class):
            phase = rng.uniform(0, 6.28)
            period = rng.uniform(4, 8)
            y, x = np.mgrid[0:size, 0:size].astype(np.float32)
            wave = np.sin(2 * np.pi * (y if label == 0 else x) / period + phase)
            colour = rng.uniform(60, 255, 3)
            pixels = (0.5 + 0.5 * wave[..., None]) * colour
            image = Image.fromarray(pixels.astype(np.uint8), "RGB")
            save(image, os.path.join(root, name, f"{name}_{i}.jpg"), quality=95)
    return root


@pytest.fixture(scope="session")
def stripes_records(tmp_path_factory):
    """Train and eval TFRecords of the stripes tree, written by convert_dataset's library."""
    from library.convert import ConvertOptions, convert

    base = tmp_path_factory.mktemp("stripes")
    make_class_tree(str(base / "images" / "train"), per_class=24, seed=1)
    make_class_tree(str(base / "images" / "eval"), per_class=8, seed=2)
    out = base / "records"
    for split in ("train", "eval"):
        convert(
            ConvertOptions(
                dataset_dir=str(base / "images" / split),
                tfrecord_filename=split,
                tfrecord_dir=str(out),
                num_shards=2,
                num_workers=1,
            )
        )
    return out
