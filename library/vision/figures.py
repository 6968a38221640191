"""The classifier's figures: the confusion matrix and sample predictions of the best
checkpoint (``ClassificationFigures``), and TensorBoard pictures of the training input and
the first layer's filters (``ImageSummaries``). Recorders a project returns from its
``callbacks_fn``; drawn in the background, a failure said at once and never a run's end."""

from __future__ import annotations

import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from matplotlib.patches import Rectangle

from library.engine.distribute import call_input_fn
from library.outputs.files import exists
from library.recorders.base import Background, Evaluation, Recorder, Run
from library.recorders.plots import plt, save_figure

CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS_PNG = "predictions.png"


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
    save_figure(figure, path)
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
    save_figure(figure, path)
    return path


def _part(structure, key):
    """``structure[key]`` of a dict (when ``key`` is given), else ``structure``."""
    return structure[key] if key is not None and isinstance(structure, dict) else structure


class ConfusionMatrix(keras.metrics.Metric):
    """Counts of (true class, predicted class) pairs over an evaluation, summed over
    replicas. ``predicted(outputs)`` gives the class ids; ``label`` picks the labels' part."""

    def __init__(self, num_classes: int, predicted: Callable, label: str | None = None):
        super().__init__(name="confusion_matrix")
        self.num_classes, self.predicted, self.label = num_classes, predicted, label
        self.counts = self.add_variable(
            (num_classes, num_classes), initializer="zeros", dtype="int64", aggregation="sum"
        )

    def update_state(self, labels, outputs, sample_weight=None):
        self.counts.assign_add(
            tf.math.confusion_matrix(
                tf.reshape(_part(labels, self.label), [-1]),
                tf.reshape(self.predicted(outputs), [-1]),
                num_classes=self.num_classes,
                dtype=tf.int64,
            )
        )

    def result(self):
        return tf.convert_to_tensor(self.counts)


class ClassificationFigures(Recorder):
    """When the best changes: the confusion matrix of its evaluation and its predictions on
    the evaluation's first batch, as PNGs in the best folder.

    Args:
        params: the run's configuration (its ``num_classes`` and ``class_names``).
        predictions_fn: the project's; its ``class`` (and ``probability``) are drawn.
        image: the feature holding the images (floats in [0, 1]).
        label: the labels' key when the labels are a dict (one head of several).
        predicted, probability: the keys of predictions_fn's class and probability.
    """

    def __init__(self, params, predictions_fn: Callable, image: str = "image",
                 label: str | None = None, predicted: str = "class", probability: str = "probability"):  # fmt: skip
        self.params, self.predictions_fn = params, predictions_fn
        self.image, self.label = image, label
        self.predicted, self.probability = predicted, probability
        self.directory = params.best_model_dir
        self.background: Background | None = None

    def start(self, run: Run) -> None:
        self.directory = run.best_model_dir
        self.background = Background("figures", coalesce=True, report=run.say)

    def evaluation_metrics(self, params) -> dict:
        def predicted(outputs):
            return self.predictions_fn(outputs, params)[self.predicted]

        return {"confusion_matrix": ConfusionMatrix(params.num_classes, predicted, self.label)}

    def on_evaluation(self, evaluation: Evaluation) -> None:
        if not evaluation.is_best:
            return
        names = list(self.params.class_names)
        title = f"Best checkpoint, {evaluation.when()}:"
        self.background.submit(
            plot_confusion_matrix,
            evaluation.arrays["confusion_matrix"],
            names,
            os.path.join(self.directory, CONFUSION_PNG),
            title,
        )
        if evaluation.first_batch is None:
            return
        features, labels = evaluation.first_batch
        predictions = {
            k: np.asarray(v)
            for k, v in self.predictions_fn(evaluation.first_outputs, self.params).items()
        }
        predicted = predictions[self.predicted][:24]
        self.background.submit(
            plot_sample_predictions,
            np.asarray(_part(features, self.image))[:24],
            np.asarray(_part(labels, self.label))[:24],
            predicted,
            predictions.get(self.probability, np.ones(len(predicted)))[:24],
            names,
            os.path.join(self.directory, PREDICTIONS_PNG),
            f"{title} true class (-> predicted when wrong), probability",
        )

    def finish(self) -> None:
        if self.background is not None:
            self.background.wait()


class ImageSummaries(Recorder):
    """In TensorBoard: a batch of the training input as pictures (``train/input``, at the
    start of a fresh run) and the first RGB convolution's filters as pictures at each
    evaluation (``eval/first_layer_filters``).

    Args:
        image: the feature holding the images (floats in [0, 1]).
        max_images: how many pictures of the input.
    """

    def __init__(self, image: str = "image", max_images: int = 16):
        self.image, self.max_images = image, max_images
        self.writers = None
        self.background: Background | None = None

    def start(self, run: Run) -> None:
        self.writers = run.writers
        self.background = Background("image summaries", report=run.say)
        fresh = not exists(os.path.join(run.model_dir, "checkpoint"))
        if run.train_input_fn is not None and run.writers.train is not None and fresh:
            features, _ = next(iter(call_input_fn(run.train_input_fn)))
            images = _part(features, self.image)[: self.max_images]
            with run.writers.train.as_default(step=0):
                tf.summary.image("input", images, max_outputs=self.max_images)

    def on_evaluation(self, evaluation: Evaluation) -> None:
        kernel = next(
            (
                np.asarray(v.numpy())
                for v in evaluation.model.trainable_variables
                if len(v.shape) == 4 and v.shape[2] == 3
            ),
            None,
        )
        if kernel is not None:
            self.background.submit(self._filters, kernel, evaluation.step)

    def _filters(self, kernel: np.ndarray, step: int) -> None:
        filters = np.transpose(kernel, [3, 0, 1, 2])  # [out, h, w, 3]
        low = filters.min(axis=(1, 2, 3), keepdims=True)
        high = filters.max(axis=(1, 2, 3), keepdims=True)
        with self.writers.eval.as_default(step=step):
            tf.summary.image(
                "first_layer_filters", (filters - low) / (high - low + 1e-8), max_outputs=32
            )

    def finish(self) -> None:
        if self.background is not None:
            self.background.wait()
