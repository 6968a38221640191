"""Matplotlib figures: curves drawn from ``metrics.jsonl`` (train and eval loss in one figure),
and the best checkpoint's confusion matrix and sample predictions."""

from __future__ import annotations

import math
import os

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display needed, none wanted
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle


def _save(figure, path: str) -> None:
    temporary = f"{path}.tmp-{os.getpid()}.png"
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    os.replace(temporary, path)


def loss_scale(values: list) -> str:
    """``log`` when the losses span more than a factor of 20 (an untrained first evaluation
    far above the rest would flatten them on a linear axis), else ``linear``."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite or min(finite) <= 0:
        return "linear"
    return "log" if max(finite) / min(finite) > 20 else "linear"


def plot_metrics(records: list[dict], plots_dir: str) -> list[str]:
    """Writes ``loss.png``, ``learning_rate.png`` and one PNG per eval metric; returns paths."""
    if not records:
        return []
    os.makedirs(plots_dir, exist_ok=True)
    epochs = [r["epoch"] for r in records]
    written = []

    figure, axis = plt.subplots(figsize=(6, 4))
    train = [r.get("train_loss") for r in records]
    evaluation = [r.get("eval_loss") for r in records]
    axis.plot(epochs, train, "o-", label="train loss")
    axis.plot(epochs, evaluation, "s-", label="eval loss")
    axis.set_yscale(loss_scale(train + evaluation))
    axis.set(xlabel="epoch", ylabel="loss", title="Loss: a widening gap means overfitting")
    axis.grid(alpha=0.3)
    axis.legend()
    written.append(os.path.join(plots_dir, "loss.png"))
    _save(figure, written[-1])

    names = [k for k in records[-1] if k.startswith("eval_") and k != "eval_loss"]
    for name in [*names, "learning_rate"]:
        values = [r.get(name) for r in records]
        if all(v is None for v in values):
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(epochs, values, "o-")
        axis.set(xlabel="epoch", ylabel=name, title=name.replace("_", " "))
        axis.grid(alpha=0.3)
        written.append(os.path.join(plots_dir, f"{name}.png"))
        _save(figure, written[-1])
    return written


def plot_confusion_matrix(confusion, class_names, path: str, title: str = "") -> str:
    """Counts of true (rows) against predicted (columns) classes, the diagonal being right."""
    confusion = np.asarray(confusion)
    classes = len(confusion)
    names = list(class_names) if class_names else [str(i) for i in range(classes)]
    side = max(4.0, 0.45 * classes + 2)
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    if classes <= 30:
        axis.set_xticks(range(classes), names, rotation=90)
        axis.set_yticks(range(classes), names)
        high = confusion.max() if confusion.size else 0
        for (row, column), count in np.ndenumerate(confusion):
            if count:
                colour = "white" if count > high / 2 else "black"
                axis.text(
                    column, row, str(count), ha="center", va="center", color=colour, fontsize=8
                )
    accuracy = np.trace(confusion) / max(1, confusion.sum())
    axis.set(xlabel="predicted class", ylabel="true class")
    axis.set_title(f"{title} accuracy {accuracy:.3f}".strip())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save(figure, path)
    return path


def plot_sample_predictions(images, labels, predicted, probabilities, class_names, path, title=""):
    """A grid of images with their true and predicted classes; wrong ones in red, framed.

    The images are laid out in one picture on one axes: 24 subplots took four times as long
    to draw, and this figure is redrawn at each new best.
    """
    count = min(len(images), 24)
    columns = min(8, count)
    rows = (count + columns - 1) // columns
    names = list(class_names) if class_names else None

    def label(k: int) -> str:
        return names[k] if names and k < len(names) else str(k)

    tiles = [np.clip(np.asarray(images[i], dtype=np.float32), 0, 1) for i in range(count)]
    tiles = [np.repeat(t, 3, axis=-1) if t.shape[-1] == 1 else t for t in tiles]
    height, width = tiles[0].shape[:2]
    gap_x, gap_y = max(2, width // 8), max(2, height // 2)  # room for each title above
    canvas = np.ones((rows * (height + gap_y), columns * (width + gap_x), 3), np.float32)
    figure, axis = plt.subplots(figsize=(1.3 * columns, 1.55 * rows))
    for i, tile in enumerate(tiles):
        row, column = divmod(i, columns)
        top, left = row * (height + gap_y) + gap_y, column * (width + gap_x) + gap_x // 2
        canvas[top : top + height, left : left + width] = tile
        truth, guess = int(labels[i]), int(predicted[i])
        right = truth == guess
        text = f"{label(truth)}" + ("" if right else f" -> {label(guess)}")
        axis.text(
            left + width / 2, top - 1, f"{text}\n{probabilities[i]:.2f}", ha="center",
            va="bottom", fontsize=7, color="green" if right else "red",
        )  # fmt: skip
        if not right:
            corner, size = (left - 1, top - 1), (width + 1, height + 1)
            axis.add_patch(Rectangle(corner, *size, fill=False, edgecolor="red", linewidth=2))
    axis.imshow(canvas, interpolation="nearest")
    axis.axis("off")
    figure.suptitle(title or "true class (-> predicted when wrong), probability", fontsize=9)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save(figure, path)
    return path


def plot_sweep(key: str, values: list, losses: list, path: str, log_x: bool = False) -> str:
    """The best validation loss of each value of a sweep; the best one marked."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    positions = list(values) if numeric else list(range(len(values)))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(positions, losses, "o-")
    best = int(np.argmin(losses))
    axis.plot([positions[best]], [losses[best]], "*", markersize=16, label=f"best: {values[best]}")
    if numeric and log_x:
        axis.set_xscale("log")
    if not numeric:
        axis.set_xticks(positions, [str(v) for v in values])
    axis.set(xlabel=key, ylabel="best validation loss", title=f"Sweep over {key}")
    axis.grid(alpha=0.3)
    axis.legend()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save(figure, path)
    return path
