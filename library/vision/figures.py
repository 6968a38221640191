"""The image kit's figures: the confusion matrix and sample predictions of the best
checkpoint (``ClassificationFigures``), TensorBoard pictures of the training input and the
first layer's filters (``ImageSummaries``), and a dense task's examples, in TensorBoard and
in the best folder: image, true and predicted mask (``MaskFigures``), image with true and
predicted boxes (``BoxFigures``). Recorders a project returns from its ``callbacks_fn``;
drawn in the background, a failure said at once and never a run's end."""

from __future__ import annotations

import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from matplotlib.patches import Rectangle

from library.base.files import exists
from library.contract import call_input_fn
from library.recorders.base import Background, Evaluation, Recorder, Run
from library.recorders.plots import plt, save_figure
from library.recorders.summaries import Summaries

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
            left + width / 2,
            top - 1,
            f"{text}\n{probabilities[i]:.2f}",
            ha="center",
            va="bottom",
            fontsize=7,
            color="green" if right else "red",
        )
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

    def __init__(
        self,
        params,
        predictions_fn: Callable,
        image: str = "image",
        label: str | None = None,
        predicted: str = "class",
        probability: str = "probability",
    ):
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
        assert self.background is not None  # start() made it
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
        self.writers: Summaries | None = None
        self.background: Background | None = None

    def start(self, run: Run) -> None:
        self.writers = run.writers
        self.background = Background("image summaries", report=run.say)
        fresh = not exists(os.path.join(run.model_dir, "checkpoint"))
        if run.train_input_fn is not None and run.writers.train is not None and fresh:
            features = next(iter(call_input_fn(run.train_input_fn)))[0]
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
            assert self.background is not None  # start() made it
            self.background.submit(self._filters, kernel, evaluation.step)

    def _filters(self, kernel: np.ndarray, step: int) -> None:
        filters = np.transpose(kernel, [3, 0, 1, 2])  # [out, h, w, 3]
        low = filters.min(axis=(1, 2, 3), keepdims=True)
        high = filters.max(axis=(1, 2, 3), keepdims=True)
        assert self.writers is not None  # start() took them
        with self.writers.eval.as_default(step=step):
            tf.summary.image(
                "first_layer_filters", (filters - low) / (high - low + 1e-8), max_outputs=32
            )

    def finish(self) -> None:
        if self.background is not None:
            self.background.wait()


# -- dense outputs: masks and boxes -------------------------------------------------------------

MASKS_PNG = "masks.png"
BOXES_PNG = "boxes.png"
TRUE_COLOUR = np.array([0.1, 0.85, 0.1], np.float32)  # green: what the labels say
PREDICTED_COLOUR = np.array([0.95, 0.1, 0.1], np.float32)  # red: what the model says


def mask_classes(outputs) -> np.ndarray:
    """Class ids ``[batch, h, w]`` of per-pixel logits: ``logit > 0`` for one channel (a
    foreground against the rest), the largest channel for several."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim == 3:
        return (outputs > 0).astype(np.int32)
    if outputs.shape[-1] == 1:
        return (outputs[..., 0] > 0).astype(np.int32)
    return np.argmax(outputs, axis=-1).astype(np.int32)


def mask_iou(true: np.ndarray, predicted: np.ndarray) -> float:
    """The mean intersection over union of one example's masks, over the classes either
    holds (1.0 when both are empty of everything, which cannot happen with a background)."""
    ious = []
    for k in np.union1d(np.unique(true), np.unique(predicted)):
        union = np.logical_or(true == k, predicted == k).sum()
        ious.append(np.logical_and(true == k, predicted == k).sum() / union)
    return float(np.mean(ious)) if ious else 1.0


def box_iou(true: np.ndarray, predicted: np.ndarray) -> float:
    """Intersection over union of two boxes ``[ymin, xmin, ymax, xmax]``."""
    low, high = np.maximum(true[:2], predicted[:2]), np.minimum(true[2:], predicted[2:])
    intersection = float(np.prod(np.clip(high - low, 0, None)))

    def area(b):
        return float(np.prod(np.clip(b[2:] - b[:2], 0, None)))

    return intersection / max(area(true) + area(predicted) - intersection, 1e-9)


def _rgb(image) -> np.ndarray:
    """An image as float RGB in [0, 1]: grey repeated, 0-255 pixels scaled."""
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.max(initial=0) > 1.5:  # uint8-like values (a project that feeds 0-255)
        pixels = pixels / 255.0
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.clip(pixels[..., :3], 0, 1)


def _nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``array`` ``[h, w, ...]`` resized to ``height`` x ``width`` by its nearest pixel."""
    rows = np.arange(height) * array.shape[0] // height
    columns = np.arange(width) * array.shape[1] // width
    return array[rows][:, columns]


def colour_mask(mask: np.ndarray, classes: int | None = None) -> np.ndarray:
    """Class ids ``[h, w]`` as RGB: black background, white foreground for two classes, a
    colour of matplotlib's ``tab10`` for each class when there are more."""
    mask = np.asarray(mask).astype(np.int64)
    count = classes or int(mask.max(initial=0)) + 1
    if count <= 2:
        return np.repeat((mask > 0).astype(np.float32)[..., None], 3, axis=-1)
    palette = np.concatenate([[[0.0, 0.0, 0.0]], plt.get_cmap("tab10")(np.arange(9))[:, :3]])
    return palette[mask % len(palette)].astype(np.float32)


def draw_box(tile: np.ndarray, box, colour: np.ndarray, thickness: int = 1) -> None:
    """Draws the outline of ``box`` (``[ymin, xmin, ymax, xmax]``, fractions) on ``tile``
    ``[h, w, 3]`` in place, clipped to it."""
    height, width = tile.shape[:2]
    ymin, xmin, ymax, xmax = np.asarray(box, dtype=np.float32)
    top, bottom = (int(np.clip(round(v * height), 0, height - 1)) for v in (ymin, ymax))
    left, right = (int(np.clip(round(v * width), 0, width - 1)) for v in (xmin, xmax))
    if bottom < top or right < left:
        return  # a degenerate prediction: nothing to outline
    t = thickness
    tile[top : top + t, left : right + 1] = colour
    tile[max(bottom - t + 1, 0) : bottom + 1, left : right + 1] = colour
    tile[top : bottom + 1, left : left + t] = colour
    tile[top : bottom + 1, max(right - t + 1, 0) : right + 1] = colour


def tile_grid(rows: list[list[np.ndarray]], gap: int = 4, row_gap: int | None = None) -> np.ndarray:
    """Tiles ``[h, w, 3]`` of equal size laid out in rows on a white canvas, ``gap`` pixels
    apart (``row_gap`` between rows: room for captions)."""
    height, width = rows[0][0].shape[:2]
    row_gap = gap if row_gap is None else row_gap
    columns = max(len(r) for r in rows)
    canvas = np.ones((len(rows) * (height + row_gap) + gap, columns * (width + gap) + gap, 3))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            top, left = gap + r * (height + row_gap), gap + c * (width + gap)
            canvas[top : top + height, left : left + width] = tile
    return canvas.astype(np.float32)


class _Pictures(Recorder):
    """The evaluation's first examples as one picture: in TensorBoard (the eval writer, at
    each evaluation or only at each new best) and as a PNG in the best folder at each new
    best. The arrays are taken at once (the next evaluation reuses its batch); the drawing
    is done in the background, and a failure of it is said once and never ends the run."""

    png: str = ""
    tag: str = ""

    def __init__(self, image: str, max_examples: int, every_evaluation: bool):
        self.image, self.max_examples = image, max_examples
        self.every_evaluation = every_evaluation
        self.writers: Summaries | None = None
        self.directory = ""
        self.background: Background | None = None
        self.say: Callable[[str], None] = print
        self.failed = False

    def start(self, run: Run) -> None:
        self.writers, self.directory, self.say = run.writers, run.best_model_dir, run.say
        self.background = Background(self.name, report=self._report)

    def _report(self, line: str) -> None:
        if not self.failed:  # once: the same failure would come back at every evaluation
            self.failed = True
            self.say(f"{line}; later failures of {self.name} go unsaid")

    def on_evaluation(self, evaluation: Evaluation) -> None:
        summary = self.every_evaluation or evaluation.is_best
        if evaluation.first_batch is None or not (summary or evaluation.is_best):
            return
        features, labels = evaluation.first_batch
        count = self.max_examples
        images = np.asarray(_part(features, self.image))[:count]
        arrays = self.arrays(labels, evaluation.first_outputs, count)
        title = ("Best checkpoint, " if evaluation.is_best else "") + evaluation.when()
        assert self.background is not None  # start() made it
        self.background.submit(
            self._draw, images, arrays, evaluation.step, title, summary, evaluation.is_best
        )

    def arrays(self, labels, outputs, count: int) -> dict[str, np.ndarray]:
        """What the picture needs of the labels and outputs, as arrays (in the main thread)."""
        raise NotImplementedError

    def compose(self, images, arrays) -> tuple[np.ndarray, list[tuple], str]:
        """``(canvas, captions, legend)``, a caption being ``(x, y, text, where)`` on the
        canvas: ``where`` ``top`` or ``bottom`` puts it below or above ``y`` (centred on
        ``x``), ``right`` to the left of ``x``."""
        raise NotImplementedError

    def _draw(self, images, arrays, step: int, title: str, summary: bool, best: bool) -> None:
        canvas, captions, legend = self.compose(images, arrays)
        if summary and self.writers is not None and self.writers.eval is not None:
            with self.writers.eval.as_default(step=step):
                tf.summary.image(self.tag, canvas[None], max_outputs=1)
        if best:
            height, width = canvas.shape[:2]
            figure, axis = plt.subplots(figsize=(max(4.0, width / 40), max(2.0, height / 40)))
            axis.imshow(canvas, interpolation="nearest")
            for x, y, text, where in captions:
                if where == "right":  # a row's name, left of it
                    axis.text(x, y, text, ha="right", va="center", fontsize=8)
                else:  # an example's caption, above ("bottom") or below ("top") its tile
                    axis.text(x, y, text, ha="center", va=where, fontsize=7)
            axis.axis("off")
            figure.suptitle(f"{title}: {legend}", fontsize=9)
            save_figure(figure, os.path.join(self.directory, self.png))

    def finish(self) -> None:
        if self.background is not None:
            self.background.wait()


class MaskFigures(_Pictures):
    """A few examples of the evaluation's first batch side by side: the image, its true mask
    and the predicted one (a row each), with each example's IoU; in TensorBoard
    (``eval/masks``) and as ``masks.png`` in the best folder. A recorder for
    ``callbacks_fn``.

    Args:
        predicted: class ids ``[batch, h, w]`` from the model's outputs (default
            ``mask_classes``: per-pixel logits, one channel or one per class).
        image: the feature holding the images (floats in [0, 1]).
        label: the labels' key when the labels are a dict; the mask is ``[batch, h, w]``
            or ``[batch, h, w, 1]`` class ids.
        output: the outputs' key when the outputs are a dict.
        max_examples: how many examples.
        every_evaluation: in TensorBoard at each evaluation (else only at each new best).
        classes: the class count, for the colours (default: what the masks hold).
    """

    png, tag = MASKS_PNG, "masks"

    def __init__(
        self,
        predicted: Callable | None = None,
        image: str = "image",
        label: str | None = None,
        output: str | None = None,
        max_examples: int = 6,
        every_evaluation: bool = True,
        classes: int | None = None,
    ):
        super().__init__(image, max_examples, every_evaluation)
        self.predicted = predicted or mask_classes
        self.label, self.output, self.classes = label, output, classes

    def arrays(self, labels, outputs, count):
        true = np.asarray(_part(labels, self.label))[:count]
        if true.ndim == 4:
            true = true[..., 0]
        predicted = np.asarray(self.predicted(_part(outputs, self.output)))[:count]
        return {"true": true.astype(np.int64), "predicted": predicted.astype(np.int64)}

    def compose(self, images, arrays):
        pictures = [_rgb(i) for i in images]
        height, width = pictures[0].shape[:2]
        scale = max(1, 96 // max(height, width))  # small canvases drawn large enough to see
        size = (height * scale, width * scale)
        classes = self.classes or int(max(arrays["true"].max(), arrays["predicted"].max())) + 1
        rows: list[list[np.ndarray]] = [[], [], []]
        captions = []
        for index, picture in enumerate(pictures):
            true = _nearest(arrays["true"][index], height, width)
            predicted = _nearest(arrays["predicted"][index], height, width)
            rows[0].append(_nearest(picture, *size))
            rows[1].append(_nearest(colour_mask(true, classes), *size))
            rows[2].append(_nearest(colour_mask(predicted, classes), *size))
            x = 4 + index * (size[1] + 4) + size[1] / 2
            iou = f"IoU {mask_iou(true, predicted):.2f}"
            captions.append((x, 3 * (size[0] + 4) + 1, iou, "top"))
        for row, name in enumerate(("image", "true", "predicted")):
            captions.append((0, 4 + row * (size[0] + 4) + size[0] / 2, f"{name} ", "right"))
        return tile_grid(rows), captions, "image, true mask, predicted mask"


class BoxFigures(_Pictures):
    """A few examples of the evaluation's first batch with their true boxes (green) and the
    predicted ones (red), with each example's IoU; in TensorBoard (``eval/boxes``) and as
    ``boxes.png`` in the best folder. A recorder for ``callbacks_fn``.

    Boxes are ``[ymin, xmin, ymax, xmax]`` in fractions of the image, one per example
    (``[batch, 4]``) or several (``[batch, n, 4]``, no IoU then).

    Args:
        label: the labels' key of the true boxes when the labels are a dict (None: the
            labels are the boxes).
        output: the outputs' key of the predicted boxes (None: the outputs are), or a
            function of the outputs that gives them.
        image: the feature holding the images (floats in [0, 1]).
        max_examples: how many examples.
        every_evaluation: in TensorBoard at each evaluation (else only at each new best).
    """

    png, tag = BOXES_PNG, "boxes"

    def __init__(
        self,
        label: str | None,
        output: str | Callable | None,
        image: str = "image",
        max_examples: int = 8,
        every_evaluation: bool = True,
    ):
        super().__init__(image, max_examples, every_evaluation)
        self.label, self.output = label, output

    def arrays(self, labels, outputs, count):
        output = self.output
        predicted = output(outputs) if callable(output) else _part(outputs, output)
        return {
            "true": np.asarray(_part(labels, self.label), np.float32)[:count],
            "predicted": np.asarray(predicted, np.float32)[:count],
        }

    def compose(self, images, arrays):
        pictures = [_rgb(i) for i in images]
        height, width = pictures[0].shape[:2]
        scale = max(1, 128 // max(height, width))
        size = (height * scale, width * scale)
        columns, row_gap = 4, max(4, size[0] // 6)  # rows of four, room for the IoU below
        tiles, captions = [], []
        for index, picture in enumerate(pictures):
            tile = _nearest(picture, *size).copy()
            true = arrays["true"][index].reshape(-1, 4)
            predicted = arrays["predicted"][index].reshape(-1, 4)
            for box in true:
                draw_box(tile, box, TRUE_COLOUR, thickness=max(1, scale))
            for box in predicted:
                draw_box(tile, box, PREDICTED_COLOUR, thickness=max(1, scale))
            tiles.append(tile)
            if len(true) == 1 and len(predicted) == 1:
                row, column = divmod(index, columns)
                x = 4 + column * (size[1] + 4) + size[1] / 2
                y = 4 + row * (size[0] + row_gap) + size[0] + 1
                captions.append((x, y, f"IoU {box_iou(true[0], predicted[0]):.2f}", "top"))
        rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
        return tile_grid(rows, row_gap=row_gap), captions, "true boxes green, predicted red"
