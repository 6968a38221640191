"""The offline demo: real handwritten digits through the whole journey, as a user runs it.

    python -m examples.digits data   # images -> dataset/digits/{train,test}/<digit>/, TFRecords
    python -m examples.digits all    # data, samples, train, evaluate, export, predict

The 1797 scanned 8x8 digits ship inside scikit-learn (``load_digits``): nothing is
downloaded. Every step runs the same commands a user would type (convert_dataset.py, run.py)
so the demo exercises exactly what the README promises.
"""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = os.path.join("dataset", "digits")
OUT = os.path.join("out", "demo")
IMAGE_SIDE = 32
SPLITS = ("train", "validation", "test")


def write_images() -> dict[str, int]:
    """Writes the digits as upscaled JPEGs in ``<split>/<digit>/`` folders."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = dict.fromkeys(SPLITS, 0)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        # One digit in five for the test set, one for validation (picking the best checkpoint
        # on the test set would flatter its score), three for training.
        split = {0: "test", 1: "validation"}.get(index % 5, "train")
        folder = os.path.join(DATASET, split, str(label))
        os.makedirs(folder, exist_ok=True)
        grey = Image.fromarray((255 - pixels * 255 / 16).astype(np.uint8), "L")  # ink on paper
        grey.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC).save(
            os.path.join(folder, f"{index:04d}.jpg"), quality=95
        )
        counts[split] += 1
    return counts


def run(*argv: str) -> str:
    """Runs one of the project's commands as a user would, echoing and returning its output."""
    print(f"\n$ python {shlex.join(argv)}", flush=True)
    process = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    print(process.stdout, end="", flush=True)
    if process.returncode:
        sys.exit(f"demo: `{' '.join(argv)}` failed with status {process.returncode}")
    return process.stdout


def make_data() -> None:
    counts = write_images()
    print(
        ", ".join(f"{n} {split}" for split, n in counts.items()) + f" digit images under {DATASET}"
    )
    for split in SPLITS:
        folder = os.path.join(DATASET, split)
        argv = ["convert_dataset.py", "--dataset_dir", folder, "--tfrecord_filename", split]
        argv += ["--tfrecord_dir", folder, "--max_edge", "64", "--overwrite"]
        if split != "train":
            argv += ["--labels_file", os.path.join(DATASET, "train", "labels.txt")]
        run(*argv)


def show_samples(path: str) -> None:
    """A grid of training images with their labels (seed 002: "show some samples")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3, 8, figsize=(8, 3.4))
    for digit, axis in enumerate(axes.flat):
        label = digit % 10
        folder = os.path.join(DATASET, "train", str(label))
        name = sorted(os.listdir(folder))[digit // 10]
        axis.imshow(Image.open(os.path.join(folder, name)), cmap="gray")
        axis.set_title(str(label), fontsize=9)
        axis.axis("off")
    figure.suptitle("Training samples and their labels")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def predict_with_saved_model(export_dir: str, out_png: str) -> None:
    """In a fresh process: load the SavedModel, predict one image, draw sample predictions."""
    code = f"""
import glob, os, sys
sys.path.insert(0, {ROOT!r})
from library import import_tensorflow
tf = import_tensorflow()
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image
serve = tf.saved_model.load({export_dir!r}).signatures["serving_default"]
paths = sorted(glob.glob(os.path.join({DATASET!r}, "test", "*", "*.jpg")))
paths = paths[:: len(paths) // 24][:24]
out = serve(image_bytes=tf.constant([open(p, "rb").read() for p in paths]))
names, probs = out["class_name"].numpy(), out["probability"].numpy()
first = paths[0]
print(f"SavedModel prediction for {{first}}: class {{names[0].decode()}} (probability {{probs[0]:.3f}}), "
      f"true class {{os.path.basename(os.path.dirname(first))}}")
figure, axes = plt.subplots(3, 8, figsize=(9, 4))
for axis, path, name, prob in zip(axes.flat, paths, names, probs):
    truth = os.path.basename(os.path.dirname(path))
    axis.imshow(Image.open(path), cmap="gray")
    colour = "green" if name.decode() == truth else "red"
    axis.set_title(f"{{truth}}->{{name.decode()}} {{prob:.2f}}", fontsize=8, color=colour)
    axis.axis("off")
figure.suptitle("Test images: true -> predicted (probability)")
figure.savefig({out_png!r}, dpi=100, bbox_inches="tight")
"""
    process = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    print(process.stdout, end="")
    if process.returncode:
        sys.exit("demo: predicting with the reloaded SavedModel failed")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("data", "all"):
        print("usage: python -m examples.digits {data|all}", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    make_data()
    if argv[0] == "data":
        return 0
    samples = os.path.join(OUT, "samples.png")
    show_samples(samples)
    print(f"\nsample images: {samples}")
    run("run.py", "--config_set", "demo")
    test_files = os.path.join(DATASET, "test", "test-*.tfrecord")
    evaluation = run(
        "run.py",
        "--config_set",
        "demo",
        "--mode",
        "evaluate",
        "--checkpoint",
        "best",
        "--eval_files",
        test_files,
    )
    accuracy = float(re.search(r"accuracy ([0-9.]+)", evaluation).group(1))
    exported = run("run.py", "--config_set", "demo", "--mode", "export", "--checkpoint", "best")
    export_dir = re.search(r"exported SavedModel: (\S+)", exported).group(1)
    predictions = os.path.join(OUT, "predictions.png")
    print()
    predict_with_saved_model(export_dir, predictions)
    print(
        "\n".join(
            [
                "",
                f"test accuracy of the best checkpoint: {accuracy:.4f}",
                f"sample images:      {samples}",
                f"sample predictions: {predictions}",
                f"loss plot:          {os.path.join(OUT, 'checkpoints', 'plots', 'loss.png')}",
                f"TensorBoard logs:   tensorboard --logdir {os.path.join(OUT, 'checkpoints')}",
                f"exported SavedModel: {export_dir}",
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
