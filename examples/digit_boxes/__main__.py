"""One encoder, two heads, end to end: ``python -m examples.digit_boxes``.

1. Each of scikit-learn's 1797 digits scaled to 16-36 px and put at a random place on a
   64-px canvas with a noisy background; its box is where it was put. Records of the image
   (JPEG), the digit and the box, written with the library's writer, in train, validation
   and test splits; the test canvases also as JPEG files with their boxes (``boxes.json``).
2. ``examples/digit_boxes/run.py``: train and evaluate (per-head loss terms, the best
   checkpoint by ``box_iou``), evaluate the best on the test records, export it, predict
   the test image files.
3. The SavedModel reloaded in a fresh process for one test image.
4. A figure of test canvases with their true and predicted boxes and digits.

Extra arguments go to the training command (``--train_epochs 4``).
"""

import json
import os
import re
import shutil
import subprocess
import sys

from PIL import Image

from examples.digit_boxes import FOLDER
from examples.digit_boxes.data import CANVAS, DATASET, make_data

ROOT = os.path.dirname(os.path.dirname(FOLDER))
RUN_PY = os.path.join(FOLDER, "run.py")
OUT = os.path.join("out", "digit_boxes")


def commands(folder: str = DATASET, out: str = OUT, *extra: str) -> dict[str, list[str]]:
    """The run.py command lines of the journey, by name."""
    common = [
        "--train_files", os.path.join(folder, "train-*.tfrecord"),
        "--eval_files", os.path.join(folder, "validation-*.tfrecord"),
        "--model_dir", os.path.join(out, "checkpoints"),
        "--best_model_dir", os.path.join(out, "best"),
    ]  # fmt: skip
    test = ["--eval_files", os.path.join(folder, "test-*.tfrecord")]
    images = ["--predict_files", os.path.join(folder, "test_images")]
    return {
        "train": [*common, *extra],
        "evaluate": [*common, "--mode", "evaluate", "--checkpoint", "best", *test],
        "export": [*common, "--mode", "export", "--checkpoint", "best"],
        "predict": [*common, "--mode", "predict", "--checkpoint", "best", *images],
    }


def run(argv: list[str]) -> str:
    print(f"\n$ python examples/digit_boxes/run.py {' '.join(argv)}", flush=True)
    process = subprocess.run(
        [sys.executable, RUN_PY, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    print(process.stdout, end="", flush=True)
    if process.returncode:
        sys.exit(f"digit_boxes: run.py failed with status {process.returncode}")
    return process.stdout


RELOAD = """
import sys
from library import import_tensorflow
tf = import_tensorflow()
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
with open(sys.argv[2], "rb") as stream:
    out = serve(image_bytes=tf.constant([stream.read()]))
box = ", ".join(f"{v:.2f}" for v in out["box"].numpy()[0])
print(f"SavedModel: {sys.argv[2]}: digit {out['class_name'].numpy()[0].decode()} "
      f"(probability {out['probability'].numpy()[0]:.3f}), box [{box}]")
"""


def predict_with_saved_model(export_dir: str, image: str) -> str:
    """In a fresh process: the SavedModel loaded, one image file predicted."""
    process = subprocess.run(
        [sys.executable, "-c", RELOAD, export_dir, image],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip
    if process.returncode:
        sys.exit(f"digit_boxes: the reloaded SavedModel failed: {process.stderr[-2000:]}")
    return process.stdout


def draw_predictions(predictions_csv: str, boxes_json: str, path: str) -> str:
    """Test canvases: the true box (green) and the predicted one (red), the digits above."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    with open(predictions_csv, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))[:16]
    with open(boxes_json, encoding="utf-8") as stream:
        truth = json.load(stream)
    figure, axes = plt.subplots(2, 8, figsize=(12, 3.6))
    for axis, row in zip(axes.flat, rows, strict=False):
        axis.imshow(Image.open(row["file"]))
        true = truth[row["file"]]
        for box, colour in ((true["box"], "lime"), (json.loads(row["box"]), "red")):
            ymin, xmin, ymax, xmax = (v * CANVAS for v in box)
            axis.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=colour, linewidth=1.5))  # fmt: skip
        right = int(row["class"]) == true["class"]
        axis.set_title(
            f"{true['class']} -> {row['class_name']}", fontsize=9, color="green" if right else "red"
        )
        axis.axis("off")
    figure.suptitle("Test canvases: true box green, predicted red; true -> predicted digit")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def main(extra: list[str]) -> int:
    os.chdir(ROOT)
    shutil.rmtree(OUT, ignore_errors=True)  # a fresh run, not a resume of the last one
    counts = make_data()
    print(", ".join(f"{n} {split}" for split, n in counts.items()) + f" canvases in {DATASET}")
    steps = commands(DATASET, OUT, *extra)
    run(steps["train"])
    evaluated = run(steps["evaluate"])
    exported = run(steps["export"])
    export_dir = re.search(r"exported SavedModel: (\S+)", exported).group(1)
    first = sorted(os.listdir(os.path.join(DATASET, "test_images")))[0]
    print(predict_with_saved_model(export_dir, os.path.join(DATASET, "test_images", first)), end="")
    predicted = run(steps["predict"])
    predictions_csv = re.search(r"written to (\S+)", predicted).group(1)
    figure = draw_predictions(predictions_csv, os.path.join(DATASET, "boxes.json"), os.path.join(OUT, "predictions.png"))  # fmt: skip
    accuracy = float(re.search(r"accuracy ([0-9.]+)", evaluated).group(1))
    box_iou = float(re.search(r"box_iou ([0-9.]+)", evaluated).group(1))
    print(f"\ntest accuracy {accuracy:.3f}, box IoU {box_iou:.3f} of the best checkpoint")
    print(f"test canvases with boxes: {figure}")
    print(f"loss terms: {os.path.join(OUT, 'checkpoints', 'plots', 'loss_terms.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
