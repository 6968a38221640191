"""A segmentation end to end: ``python -m examples.segmentation``.

1. Each of scikit-learn's 1797 digits drawn at 20-40 px at a random place on a noisy 64-px
   canvas among a few ink dots; its mask is the digit's pixels. Records of the image and the
   mask (PNGs) in train, validation and test splits; the test canvases and masks also as
   PNG files (``data.py``).
2. ``examples/segmentation/run.py``: train and evaluate (two loss terms, the best checkpoint
   by the mean IoU), evaluate the best on the test records, export it.
3. The SavedModel reloaded in a fresh process: one test canvas segmented, its mask written
   as a PNG and scored against the true one.
4. ``--mode predict`` on the folder of test canvases: a mask PNG per canvas, named in
   ``predictions.csv``; a figure of some of them beside their true masks.

Extra arguments go to the training command (``--train_epochs 4``).
"""

import csv
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from . import FOLDER
from .data import DATASET, baselines, write_data

ROOT = os.path.dirname(os.path.dirname(FOLDER))
RUN_PY = os.path.join(FOLDER, "run.py")
OUT = os.path.join("out", "segmentation")


def flags(**values: str) -> list[str]:
    """``--key value`` pairs."""
    return [part for key, value in values.items() for part in (f"--{key}", value)]


def commands(folder: str = DATASET, out: str = OUT, *extra: str) -> dict[str, list[str]]:
    """The run.py command lines of the journey, by name."""
    common = flags(
        train_files=os.path.join(folder, "train-*.tfrecord"),
        eval_files=os.path.join(folder, "validation-*.tfrecord"),
        model_dir=os.path.join(out, "checkpoints"),
        best_model_dir=os.path.join(out, "best"),
    )
    test = os.path.join(folder, "test-*.tfrecord")
    images = os.path.join(folder, "test_images")
    return {
        "train": [*common, *extra],
        "evaluate": [*common, *flags(mode="evaluate", checkpoint="best", eval_files=test)],
        "export": [*common, *flags(mode="export", checkpoint="best")],
        "predict": [*common, *flags(mode="predict", checkpoint="best", predict_files=images)],
    }


def run(argv: list[str]) -> str:
    """run.py as a user runs it, echoed; its output."""
    print(f"\n$ python examples/segmentation/run.py {' '.join(argv)}", flush=True)
    process = subprocess.run(
        [sys.executable, RUN_PY, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    print(process.stdout, end="", flush=True)
    if process.returncode:
        sys.exit(f"segmentation: run.py failed with status {process.returncode}")
    return process.stdout


RELOAD = """
import sys
from library import import_tensorflow
tf = import_tensorflow()
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
with open(sys.argv[2], "rb") as stream:
    out = serve(image_bytes=tf.constant([stream.read()]))
with open(sys.argv[3], "wb") as stream:
    stream.write(out["mask"].numpy()[0])
print(f"SavedModel: {sys.argv[2]}: mask written to {sys.argv[3]} "
      f"(the digit on {out['foreground'].numpy()[0]:.1%} of the pixels)")
"""


def predict_with_saved_model(export_dir: str, image: str, mask: str) -> str:
    """In a fresh process: the SavedModel loaded, one image file segmented, its mask written
    to ``mask`` (a PNG); returns what it printed."""
    process = subprocess.run(
        [sys.executable, "-c", RELOAD, export_dir, image, mask],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    if process.returncode:
        sys.exit(f"segmentation: the reloaded SavedModel failed: {process.stderr[-2000:]}")
    return process.stdout


def read_mask(path: str, like: np.ndarray | None = None) -> np.ndarray:
    """A mask PNG as booleans (True: the digit); at the size of ``like`` when given (the
    model's masks are at its ``image_size``), resized by the nearest pixel."""
    with Image.open(path) as mask:
        grey = mask.convert("L")
        if like is not None:
            grey = grey.resize(like.shape[::-1], Image.NEAREST)
        return np.asarray(grey) > 127


def iou(true: np.ndarray, predicted: np.ndarray) -> float:
    """The mean IoU over background and digit of two boolean masks."""
    scores = []
    for a, b in ((true, predicted), (~true, ~predicted)):
        union = np.logical_or(a, b).sum()
        scores.append(np.logical_and(a, b).sum() / union if union else 1.0)
    return float(np.mean(scores))


def predicted_masks(predictions_csv: str) -> dict[str, str]:
    """``{image file: mask file}`` of ``predictions.csv``: its ``mask`` column names a PNG
    per example (a path as written, or relative to the CSV's folder)."""
    with open(predictions_csv, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    found = {}
    for row in rows:
        path = row["mask"]
        if not os.path.isabs(path) and not os.path.exists(path):
            path = os.path.join(os.path.dirname(predictions_csv), path)
        found[row["file"]] = path
    return found


def draw_predictions(masks: dict[str, str], true_folder: str, path: str, count: int = 8) -> str:
    """Test canvases (top), their true masks and the predicted ones, with each IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = sorted(masks)[:count]
    figure, axes = plt.subplots(3, len(chosen), figsize=(1.6 * len(chosen), 5.2), squeeze=False)
    for column, image in enumerate(chosen):
        true = read_mask(os.path.join(true_folder, os.path.basename(image)))
        predicted = read_mask(masks[image], like=true)
        with Image.open(image) as picture:
            axes[0, column].imshow(picture.convert("RGB"))
        axes[1, column].imshow(true, cmap="gray", interpolation="nearest")
        axes[2, column].imshow(predicted, cmap="gray", interpolation="nearest")
        axes[2, column].set_title(f"IoU {iou(true, predicted):.2f}", fontsize=9, y=-0.25)
        for axis in axes[:, column]:
            axis.set_xticks([])
            axis.set_yticks([])
    for row, name in enumerate(("canvas", "true mask", "predicted")):
        axes[row, 0].set_ylabel(name)
    figure.suptitle("Test canvases: the true mask and the one --mode predict wrote")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def main(extra: list[str]) -> int:
    start = time.perf_counter()
    os.chdir(ROOT)
    shutil.rmtree(OUT, ignore_errors=True)  # a fresh run, not a resume of the last one
    counts = write_data()
    print(", ".join(f"{n} {split}" for split, n in counts.items()) + f" canvases in {DATASET}")
    steps = commands(DATASET, OUT, *extra)
    run(steps["train"])
    evaluated = run(steps["evaluate"])
    exported = run(steps["export"])
    export_dir = re.search(r"exported SavedModel: (\S+)", exported).group(1)
    images, true_masks = (os.path.join(DATASET, name) for name in ("test_images", "test_masks"))
    first = sorted(os.listdir(images))[0]
    reloaded_mask = os.path.join(OUT, f"saved_model_{first}")
    print(predict_with_saved_model(export_dir, os.path.join(images, first), reloaded_mask), end="")
    true = read_mask(os.path.join(true_masks, first))
    score = iou(true, read_mask(reloaded_mask, like=true))
    print(f"its IoU against the true mask: {score:.3f}")
    predicted = run(steps["predict"])
    predictions_csv = re.search(r"written to (\S+)", predicted).group(1)
    figure = draw_predictions(
        predicted_masks(predictions_csv), true_masks, os.path.join(OUT, "predictions.png")
    )
    test_iou = float(re.search(r" iou ([0-9.]+)", evaluated).group(1))
    floor = baselines(true_masks)
    print(
        f"\ntest IoU {test_iou:.3f} of the best checkpoint (all background would score "
        f"{floor['all background']:.3f}, all digit {floor['all foreground']:.3f})"
    )
    print(f"test canvases, true and predicted masks: {figure}")
    print(f"masks of the best checkpoint: {os.path.join(OUT, 'best', 'masks.png')}")
    print(f"the journey took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
