"""The train and eval steps: short tf.functions, separate from the outer loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import tensorflow as tf


class StepState(tf.Module):
    """Counters the step updates on the device; the loop reads them only when it logs."""

    def __init__(self):
        super().__init__()
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.nonfinite_in_a_row = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.nonfinite_total = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.grad_norm = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.train_loss = keras.metrics.Mean(name="train_loss")


def model_inputs(model: keras.Model, features):
    """The features the model takes: a dict-input model ignores extras such as ``filename``."""
    if isinstance(features, Mapping) and isinstance(model.input, Mapping):
        return {name: features[name] for name in model.input}
    return features


def mean_loss(per_example: tf.Tensor, model: keras.Model) -> tf.Tensor:
    """Mean of the per-example loss over the global batch, plus the model's regularisation."""
    loss = tf.nn.compute_average_loss(tf.cast(per_example, tf.float32))
    if model.losses:
        loss += tf.nn.scale_regularization_loss(
            tf.add_n([tf.cast(x, tf.float32) for x in model.losses])
        )
    return loss


def build_train_step(model, loss_fn: Callable, optimizer, params: Mapping, state: StepState):
    """One update; a non-finite loss or gradient leaves weights and optimizer untouched."""

    def train_step(features, labels):
        # Batch norm updates its moving statistics in the forward pass: keep them to undo.
        statistics = [tf.identity(v) for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            outputs = model(model_inputs(model, features), training=True)
            per_example = loss_fn(labels, outputs, params)
            loss = mean_loss(per_example, model)
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        grad_norm = tf.linalg.global_norm([g for g in grads if g is not None])
        finite = tf.math.is_finite(loss) & tf.math.is_finite(grad_norm)

        def apply():
            optimizer.apply_gradients(zip(grads, variables, strict=True))

        def revert():
            for variable, value in zip(model.non_trainable_variables, statistics, strict=True):
                variable.assign(value)

        tf.cond(finite, apply, revert)
        state.step.assign_add(1)
        state.nonfinite_in_a_row.assign(
            tf.where(finite, tf.constant(0, tf.int64), state.nonfinite_in_a_row + 1)
        )
        state.nonfinite_total.assign_add(tf.cast(~finite, tf.int64))
        state.grad_norm.assign(tf.where(finite, grad_norm, state.grad_norm))
        # Weight 0 keeps a NaN step out of the running mean (NaN * 0 is still NaN: zero it).
        batch_loss = tf.where(finite, tf.reduce_mean(tf.cast(per_example, tf.float32)), 0.0)
        state.train_loss.update_state(batch_loss, sample_weight=tf.cast(finite, tf.float32))

    return train_step


def build_train_loop(train_step: Callable, xla: bool, state: StepState):
    """Runs ``steps`` train steps inside one graph call (``steps_per_execution``).

    Returns the count of non-finite steps in a row, the one value the loop must see each call.
    """
    step = tf.function(train_step, jit_compile=True) if xla else train_step

    @tf.function
    def train_loop(iterator, steps):
        for _ in tf.range(steps):
            features, labels = next(iterator)
            if isinstance(features, Mapping):  # XLA takes no strings (e.g. filenames)
                features = {k: v for k, v in features.items() if v.dtype != tf.string}
            step(features, labels)
        return state.nonfinite_in_a_row.read_value()

    return train_loop


def build_eval_step(model, loss_fn: Callable, params: Mapping, loss_metric, metrics: Mapping):
    """Accumulates the eval loss and metrics for one batch, in inference mode."""

    @tf.function(reduce_retracing=True)
    def eval_step(features, labels):
        outputs = model(model_inputs(model, features), training=False)
        loss_metric.update_state(tf.cast(loss_fn(labels, outputs, params), tf.float32))
        for metric in metrics.values():
            metric.update_state(labels, outputs)

    return eval_step
