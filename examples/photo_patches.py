"""A small two-class set of real photographs, made offline, as a user's first dataset would be.

    python -m examples.photo_patches            # data, then a short run of the default set
    python -m examples.photo_patches data       # only dataset/patches/{train,validation}

The two photographs that ship inside scikit-learn (a temple in China, a flower) are cut into
50-px grayscale patches of varied size, saved as PNGs in ``<class>/`` folders: training
patches from the left part of each photograph, validation patches from the right part, so
that validation sees places training never saw. A few hundred images and a few hundred steps:
the short run on small data where batch-norm statistics that lag behind the weights used to
make every evaluation report chance accuracy (see docs/training.md, "Defaults that learn small data").
"""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = os.path.join("dataset", "patches")
SIDE = 50


def write_patches(root: str, per_class: dict[str, int], seed: int = 0) -> dict[str, int]:
    """Writes ``per_class[split]`` patches of each photograph under ``root/<split>/<class>/``."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in per_class.items():
        for path, pixels in zip(photos.filenames, photos.images, strict=True):
            name = os.path.splitext(os.path.basename(path))[0]
            height, width = pixels.shape[:2]
            # Training from the left 60% of the photograph, validation from the right 40%.
            left, right = (0, int(0.6 * width)) if split == "train" else (int(0.6 * width), width)
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                side = int(rng.integers(60, 160))
                top = int(rng.integers(0, height - side))
                start = int(rng.integers(left, max(left + 1, right - side)))
                patch = Image.fromarray(pixels[top : top + side, start : start + side]).convert("L")
                patch.resize((SIDE, SIDE), Image.Resampling.LANCZOS).save(
                    os.path.join(folder, f"{i:04d}.png")
                )
            written[f"{split}/{name}"] = count
    return written


def run(*argv: str) -> None:
    print(f"$ python {' '.join(argv)}", flush=True)
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True)


def make_data() -> None:
    counts = write_patches(DATASET, {"train": 80, "validation": 40})
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    for split in ("train", "validation"):
        folder = os.path.join(DATASET, split)
        argv = ["convert_dataset.py", "--dataset_dir", folder, "--tfrecord_filename", split]
        argv += ["--tfrecord_dir", folder, "--max_edge", "64", "--overwrite"]
        if split != "train":
            argv += ["--labels_file", os.path.join(DATASET, "train", "labels.txt")]
        run(*argv)


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    make_data()
    if argv[:1] == ["data"]:
        return 0
    run("run.py", "--config_set", "patches", *argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
