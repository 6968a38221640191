"""Batch-norm statistics measured with the current weights (detectron2's PreciseBN).

A batch-norm layer's moving averages lag behind the weights: after a few hundred steps with
Keras' momentum of 0.99 they still remember the first ones, and evaluation in inference mode
sees garbage. Re-estimating them before a checkpoint from a few training batches, with the
weights of that checkpoint, makes every saved (and evaluated) model consistent.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from library.contract import model_inputs


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's trainable batch-norm layers (frozen ones keep their statistics)."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def build_refresh(
    strategy: tf.distribute.Strategy, model: keras.Model
) -> Callable[[object, int], None] | None:
    """``refresh(iterator, batches)``: sets each batch-norm layer's moving mean and variance
    to the average of ``batches`` training batches' statistics under the current weights.

    Each pass runs the model in training mode; the layer then mixes the batch's statistics
    into its moving ones with its own momentum, from which they are read back exactly:
    ``batch = (after - momentum * before) / (1 - momentum)``. Returns None for a model
    without batch norm.
    """
    layers = [layer for layer in batch_norm_layers(model) if layer.momentum < 1.0]
    if not layers:
        return None
    variables = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    momenta = [layer.momentum for layer in layers for _ in range(2)]

    def replica_pass(features):
        before = [tf.identity(v) for v in variables]
        model(model_inputs(model, features), training=True)
        return [(v - m * b) / (1.0 - m) for v, b, m in zip(variables, before, momenta, strict=True)]

    @tf.function
    def refresh(iterator, batches):
        totals = [tf.zeros_like(v) for v in variables]
        for _ in tf.range(batches):
            features = next(iterator)[0]
            measured = strategy.run(replica_pass, args=(features,))
            measured = [
                strategy.reduce(tf.distribute.ReduceOp.MEAN, m, axis=None) for m in measured
            ]
            totals = [t + m for t, m in zip(totals, measured, strict=True)]
        for variable, total in zip(variables, totals, strict=True):
            variable.assign(total / tf.cast(batches, total.dtype))

    return refresh
