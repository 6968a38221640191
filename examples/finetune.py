"""Transfer learning offline, as seed 002 walks through it: fine-tune a pretrained encoder.

    python -m examples.finetune

1. Digits 0-4 (about 900 images) train the demo's small CNN (set ``finetune_source``).
2. ``run.py --mode export_encoder`` writes its encoder as a reusable SavedModel: the same
   format as a TF Hub image module, loaded by ``encoder: hub``.
3. Digits 5-9 with only a few training images per class are learned four ways, for the
   same number of steps: the pretrained encoder frozen (a new head only), fine-tuned
   (``fine_tuning: true``), fine-tuned with its updates scaled by ``lr_mult`` 0.1, and the
   same network from scratch (set ``finetune``).
4. A table of validation accuracies and a PNG of sample predictions.

Every step is a command a user would type; nothing is downloaded (the digits ship inside
scikit-learn).
"""

import csv
import json
import os
import re
import shutil
import sys

import numpy as np
from PIL import Image

from examples.digits import IMAGE_SIDE, ROOT, run

DATASET = os.path.join("dataset", "finetune")
OUT = os.path.join("out", "finetune")
TRAIN_PER_CLASS = 10  # the second task's few examples per class


def write_images() -> None:
    """Digits 0-4: the source task; 5-9: the target task with few training images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: dict[int, int] = {}
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        if label < 5:
            task, split = "source", "validation" if index % 5 == 0 else "train"
        else:
            seen[label] = seen.get(label, 0) + 1
            task, split = "target", "train" if seen[label] <= TRAIN_PER_CLASS else "validation"
        folder = os.path.join(DATASET, task, split, str(label))
        os.makedirs(folder, exist_ok=True)
        grey = Image.fromarray((255 - pixels * 255 / 16).astype(np.uint8), "L")
        grey.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC).save(
            os.path.join(folder, f"{index:04d}.jpg"), quality=95
        )


def convert() -> None:
    for task in ("source", "target"):
        for split in ("train", "validation"):
            folder = os.path.join(DATASET, task, split)
            argv = ["convert_dataset.py", "--dataset_dir", folder, "--tfrecord_filename", split]
            argv += ["--tfrecord_dir", folder, "--max_edge", "64", "--overwrite"]
            if split != "train":
                argv += ["--labels_file", os.path.join(DATASET, task, "train", "labels.txt")]
            run(*argv)


def best_accuracy(model_dir: str) -> tuple[float, int]:
    """The best validation accuracy a run reached, and its step (from metrics.jsonl)."""
    with open(os.path.join(model_dir, "metrics.jsonl"), encoding="utf-8") as stream:
        rows = [json.loads(line) for line in stream if line.strip()]
    row = max(rows, key=lambda r: r["eval_accuracy"])
    return row["eval_accuracy"], row["step"]


def draw_predictions(predictions_csv: str, out_png: str) -> None:
    """Validation images with true and predicted class, wrong ones in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(predictions_csv, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    rows = rows[:: max(1, len(rows) // 24)][:24]
    figure, axes = plt.subplots(3, 8, figsize=(9, 4))
    for axis, row in zip(axes.flat, rows, strict=False):
        truth = os.path.basename(os.path.dirname(row["file"]))
        axis.imshow(Image.open(row["file"]), cmap="gray")
        colour = "green" if row["class_name"] == truth else "red"
        axis.set_title(f"{truth}->{row['class_name']} {float(row['probability']):.2f}", fontsize=8, color=colour)  # fmt: skip
        axis.axis("off")
    figure.suptitle("Fine-tuned on 10 images per class: true -> predicted (probability)")
    figure.savefig(out_png, dpi=100, bbox_inches="tight")
    plt.close(figure)


def main() -> int:
    os.chdir(ROOT)
    shutil.rmtree(OUT, ignore_errors=True)  # the table compares fresh runs, not resumed ones
    shutil.rmtree(DATASET, ignore_errors=True)
    write_images()
    convert()
    run("run.py", "--config_set", "finetune_source")
    exported = run("run.py", "--config_set", "finetune_source", "--mode", "export_encoder", "--checkpoint", "best")  # fmt: skip
    encoder_dir = re.search(r"reusable SavedModel: (\S+)", exported).group(1)
    variants = {
        "pretrained encoder, frozen": ["--fine_tuning", "false"],
        "pretrained encoder, fine-tuned": ["--fine_tuning", "true"],
        "fine-tuned, encoder at lr_mult 0.1": [
            "--fine_tuning",
            "true",
            "--lr_mult",
            "{'^hub/': 0.1}",
        ],
        "same network from scratch": ["--encoder", "small_cnn"],
    }
    results = {}
    for index, (name, argv) in enumerate(variants.items()):
        folder = os.path.join(OUT, f"variant{index}")
        model_dir = os.path.join(folder, "checkpoints")
        run("run.py", "--config_set", "finetune", "--hub_handle", encoder_dir, *argv,
            "--model_dir", model_dir, "--best_model_dir", os.path.join(folder, "best"))  # fmt: skip
        results[name] = best_accuracy(model_dir)
    fine_tuned = os.path.join(OUT, "variant2")
    validation = os.path.join(DATASET, "target", "validation")
    predicted = run("run.py", "--config_set", "finetune", "--hub_handle", encoder_dir,
                    "--model_dir", os.path.join(fine_tuned, "checkpoints"),
                    "--best_model_dir", os.path.join(fine_tuned, "best"), "--mode", "predict",
                    "--lr_mult", "{'^hub/': 0.1}",
                    "--checkpoint", "best", "--predict_files", validation,
                    "--predict_recursive", "true")  # fmt: skip
    predictions_csv = re.search(r"written to (\S+)", predicted).group(1)
    png = os.path.join(OUT, "predictions.png")
    draw_predictions(predictions_csv, png)
    print("\n| digits 5-9, 10 training images per class | best validation accuracy | at step |")
    print("|---|---|---|")
    for name, (accuracy, step) in results.items():
        print(f"| {name} | {accuracy:.3f} | {step} |")
    print(f"\nsample predictions: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
