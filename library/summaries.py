"""TensorBoard summaries and ``metrics.jsonl``, the record the plots are drawn from."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from library.files import atomic_write_text

METRICS_FILE = "metrics.jsonl"


class Summaries:
    """``train/`` and ``eval/`` TensorBoard writers under ``model_dir``."""

    def __init__(self, model_dir: str):
        self.train = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
        self.eval = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))

    def scalars(self, writer, values: dict, step: int) -> None:
        with writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def image_grid(self, images: tf.Tensor, step: int, max_images: int = 16) -> None:
        with self.train.as_default(step=step):
            tf.summary.image("first_batch", images[:max_images], max_outputs=max_images)

    def weights(self, model: keras.Model, step: int) -> None:
        """Weight histograms and the first layer's filters as images."""
        with self.eval.as_default(step=step):
            for variable in model.trainable_variables:
                tf.summary.histogram(variable.path, variable)
            kernel = first_rgb_kernel(model)
            if kernel is not None:
                filters = tf.transpose(kernel, [3, 0, 1, 2])  # [out, h, w, 3]
                low = tf.reduce_min(filters, axis=[1, 2, 3], keepdims=True)
                high = tf.reduce_max(filters, axis=[1, 2, 3], keepdims=True)
                tf.summary.image(
                    "first_layer_filters", (filters - low) / (high - low + 1e-8), max_outputs=32
                )

    def flush(self) -> None:
        self.train.flush()
        self.eval.flush()


def first_rgb_kernel(model: keras.Model) -> tf.Tensor | None:
    """The kernel of the first convolution that reads RGB input, if any."""
    for variable in model.trainable_variables:
        if len(variable.shape) == 4 and variable.shape[2] == 3:
            return tf.convert_to_tensor(variable)
    return None


def append_metrics(model_dir: str, record: dict) -> None:
    """Appends one evaluation as a JSON line (flushed, so a kill loses at most that line)."""
    with open(os.path.join(model_dir, METRICS_FILE), "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def read_metrics(model_dir: str) -> list[dict]:
    """The evaluations recorded so far; a line cut short by a kill is ignored."""
    path = os.path.join(model_dir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_metrics(model_dir: str, last_step: int) -> None:
    """Drops evaluations after ``last_step``: after a resume they will be made again."""
    records = read_metrics(model_dir)
    kept = [r for r in records if r.get("step", 0) <= last_step]
    if len(kept) != len(records):
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write_text(os.path.join(model_dir, METRICS_FILE), text)
