"""TensorBoard: the ``train/`` and ``eval/`` writers, histograms written fast, and the
recorder of each evaluation's scalars, weight histograms and block activations."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.util import tensor_util

from library.recorders.base import Background, Evaluation, Recorder


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

    def flush(self) -> None:
        for writer in (self.train, self.eval):
            if writer is not None:
                writer.flush()


def snapshot_weights(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    """``(path, values)`` of every trainable variable, copied to the host: what
    the weight histograms need, taken in milliseconds so that it can be written in the
    background while training moves on."""
    return [(v.path, np.asarray(v.numpy())) for v in model.trainable_variables]


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


class WriteEvalSummaries(Recorder):
    """Evaluation scalars, weight histograms and the activations of each encoder block
    (layers named ``block...``) on the evaluation's first batch, in ``eval/``.

    The activations come from the evaluation pass; weights are copied to the host at once.
    Both are written in the background: histograms cost tens of milliseconds that the
    training step need not wait for.
    """

    def __init__(self, writers: Summaries):
        self.writers = writers
        self.background = Background("summaries")

    def on_evaluation(self, evaluation: Evaluation) -> None:
        self.writers.scalars(self.writers.eval, evaluation.results, evaluation.step)
        weights = snapshot_weights(evaluation.model)
        step = evaluation.step
        self.background.submit(write_histograms, self.writers.eval, weights, step)
        if evaluation.activations:
            self.background.submit(
                write_activations, self.writers.eval, evaluation.activations, step
            )

    def finish(self) -> None:
        self.background.wait()
        self.writers.flush()
