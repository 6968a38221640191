"""TensorBoard summaries and ``metrics.jsonl``, the record the plots are drawn from."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.util import tensor_util

from library.files import atomic_write_text

METRICS_FILE = "metrics.jsonl"


class Summaries:
    """``train/`` and ``eval/`` TensorBoard writers under ``model_dir``.

    They flush every few seconds by themselves and at ``flush()``; the loop never waits on
    a flush between steps.
    """

    def __init__(self, model_dir: str, flush_seconds: float = 10.0, train: bool = True):
        flush_millis = int(flush_seconds * 1000)
        # A separate evaluator owns eval/ and must not create train/, the trainer's.
        self.train = (
            tf.summary.create_file_writer(
                os.path.join(model_dir, "train"), flush_millis=flush_millis
            )
            if train
            else None
        )
        self.eval = tf.summary.create_file_writer(
            os.path.join(model_dir, "eval"), flush_millis=flush_millis
        )

    def scalars(self, writer, values: dict, step: int) -> None:
        with writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def input_picture(self, step: tf.Variable, strategy: tf.distribute.Strategy, max_images=16):
        """A function for the train loop's graph: records the batch that trains step 1 (no
        batch is spent on the picture)."""

        def record(features):
            images = strategy.experimental_local_results(features["image"])[0]
            with (
                self.train.as_default(step=step),
                tf.summary.record_if(tf.equal(step, 0)),
                tf.compat.v1.name_scope(None),  # "input", not the loop's "while/input"
            ):
                tf.summary.image("input", images[:max_images], max_outputs=max_images)

        return record

    def weights(self, model: keras.Model, step: int) -> None:
        """Weight histograms and the first layer's filters as images."""
        write_weights(self.eval, snapshot_weights(model), step)

    def flush(self) -> None:
        for writer in (self.train, self.eval):
            if writer is not None:
                writer.flush()


def snapshot_weights(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    """``(path, values)`` of every trainable variable, copied to the host: what
    ``write_weights`` needs, taken in milliseconds so that it can be written in the
    background while training moves on."""
    return [(v.path, np.asarray(v.numpy())) for v in model.trainable_variables]


BLOCK_PREFIX = "block"


def observer_model(model: keras.Model) -> keras.Model | None:
    """A model of ``model``'s layers giving ``(outputs, activations)``: its outputs and those
    of the layers named ``block...`` (the encoder's blocks) by name; None when there are no
    such layers (or the model is not functional)."""
    try:
        blocks = [
            layer for layer in model._flatten_layers(include_self=False)
            if layer.name.startswith(BLOCK_PREFIX)
        ]  # fmt: skip
        if not blocks:
            return None
        activations = {layer.name: layer.output for layer in blocks}
        return keras.Model(model.input, (model.output, activations))
    except (AttributeError, ValueError):
        return None


def write_activations(writer, activations: dict[str, np.ndarray], step: int) -> None:
    """Histograms of each block's output on an evaluation batch (``activations/<block>``)."""
    write_histograms(writer, [(f"activations/{n}", v) for n, v in activations.items()], step)


def write_histograms(writer, named: list[tuple[str, np.ndarray]], step: int) -> None:
    """TensorBoard histograms computed with NumPy, written as one summary.

    TensorBoard's own builds a one-hot matrix of size x buckets in float64 (slow, and large for
    big variables). One write for all: this runs in the background, where each TF op waits for
    the GIL behind the other background work (the best SavedModel, the figures), and one op per
    histogram made the summaries the last thing a run waited for.
    """
    summary = summary_pb2.Summary(value=[histogram_value(n, v) for n, v in named])
    with writer.as_default(step=step):
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


def histogram_value(name: str, values: np.ndarray, buckets: int = 30) -> summary_pb2.Summary.Value:
    """A histogram summary value of ``values``, in TensorBoard's format (``[buckets, 3]``:
    left edge, right edge, count)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high > low:
        counts, edges = np.histogram(values, bins=buckets, range=(low, high))
    else:  # one value (or none): TensorBoard's convention, everything in the last bucket
        counts, edges = np.zeros(buckets), np.full(buckets + 1, low)
        counts[-1] = values.size
    table = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
    metadata = histogram_metadata.create_summary_metadata(display_name=None, description=None)
    tensor = tensor_util.make_tensor_proto(table, dtype=np.float64)
    return summary_pb2.Summary.Value(tag=name, metadata=metadata, tensor=tensor)


def write_weights(writer, weights: list[tuple[str, np.ndarray]], step: int) -> None:
    """Histograms of ``weights`` and the first RGB convolution's filters as images."""
    write_histograms(writer, weights, step)
    with writer.as_default(step=step):
        kernel = next((v for _, v in weights if v.ndim == 4 and v.shape[2] == 3), None)
        if kernel is not None:
            filters = np.transpose(kernel, [3, 0, 1, 2])  # [out, h, w, 3]
            low = filters.min(axis=(1, 2, 3), keepdims=True)
            high = filters.max(axis=(1, 2, 3), keepdims=True)
            tf.summary.image(
                "first_layer_filters", (filters - low) / (high - low + 1e-8), max_outputs=32
            )


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
