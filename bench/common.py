"""Helpers shared by the benchmarks: synthetic-but-structured images, timing, the machine."""

import os
import platform
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def structured_image(rng, width, height):
    """Gradients, oriented waves and blobs: compresses and decodes like a photo, unlike noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(0.02, 0.2)
        channels.append(120 + 100 * np.sin(frequency * (x * np.cos(angle) + y * np.sin(angle))))
    pixels = np.stack(channels, -1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(10, 80)
        pixels += (
            rng.uniform(-90, 90, 3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)[..., None]
        )
    pixels += rng.normal(0, 6, pixels.shape)  # sensor noise: real JPEG entropy
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_tree(root, count, classes=4, min_edge=256, max_edge=500, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = os.path.join(root, f"class_{i % classes}")
        os.makedirs(folder, exist_ok=True)
        width, height = (int(v) for v in rng.integers(min_edge, max_edge + 1, 2))
        structured_image(rng, width, height).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)
    return root


def rate(count, seconds):
    return count / seconds


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def machine():
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
