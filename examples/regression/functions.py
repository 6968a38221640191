"""Input, model, loss, optimizer, metrics and serving of the regression: features are the ten
named columns, the label and the output the progression."""

import os

import keras
import tensorflow as tf

from library import CSVLogger, ModeKeys, Selected, read_records, replica_batch_size

from . import COLUMNS, TARGET, data

SPEC = {name: tf.io.FixedLenFeature([], tf.float32) for name in (*COLUMNS, TARGET)}


def input_fn(file_pattern, mode, params, input_context=None):
    """Batches of ``({column: value}, {"progression": value})`` from records written by the
    library's writer (``tf.train.Example``s of the columns and the target)."""
    training = mode == ModeKeys.TRAIN
    records = read_records(
        file_pattern, training, shuffle_buffer=params.shuffle_buffer, seed=params.random_seed,
        input_context=input_context,
    )  # fmt: skip
    batch = params.train_batch_size if training else params.eval_batch_size
    batches = records.batch(replica_batch_size(batch, input_context), drop_remainder=training)

    def split(serialized):
        row = tf.io.parse_example(serialized, SPEC)
        return {name: row[name] for name in COLUMNS}, {TARGET: row[TARGET]}

    return batches.map(split).prefetch(tf.data.AUTOTUNE)


def model_fn(params):
    """An MLP on the ten columns; the output is the progression in its own units."""
    inputs = {name: keras.Input((), name=name) for name in COLUMNS}
    x = keras.ops.stack([inputs[name] for name in COLUMNS], axis=-1)
    for units in params.hidden_units:
        regularizer = keras.regularizers.L2(params.l2_regularization)
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer)(x)
        x = keras.layers.Dropout(params.dropout_rate)(x)
    scaled = keras.layers.Dense(1, name="scaled")(x)
    progression = keras.ops.squeeze(scaled, axis=-1) * params.target_scale
    return keras.Model(inputs, {TARGET: progression})


def loss_fn(labels, outputs, params):
    """Squared error of the scaled target, per example."""
    return tf.square((labels[TARGET] - outputs[TARGET]) / params.target_scale)


def optimizer_fn(params, plan):
    rate = keras.optimizers.schedules.CosineDecay(params.learning_rate, plan.schedule_steps)
    return keras.optimizers.Adam(rate)


def metrics_fn(params):
    return {"mae": Selected(keras.metrics.MeanAbsoluteError(name="mae"), TARGET)}


def predictions_fn(outputs, params):
    return {TARGET: outputs[TARGET]}


def serving_inputs(params):
    """The exported model takes each column by name, a batch of float32 values."""
    return {name: tf.TensorSpec([None], tf.float32) for name in COLUMNS}


def serving_fn(inputs, params):
    return dict(inputs)


def callbacks_fn(params):
    return [CSVLogger()]


def sample_fn(folder, params):
    """The whole table (442 rows: small) as the journey writes it, for the project's tests."""
    tables = data.write_tables(folder)
    data.write_records(tables, folder)
    return {
        "train_files": os.path.join(folder, "train-*.tfrecord"),
        "eval_files": os.path.join(folder, "validation-*.tfrecord"),
        "predict_files": tables["test"],
    }
