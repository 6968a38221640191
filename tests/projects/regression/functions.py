"""The regression's functions: features ``{a, b, c}``, labels ``{y}``, outputs
``{y, quantiles}``, a loss of the terms ``mse`` and ``quantile``."""

import keras
import tensorflow as tf

from library import CSVLogger, ModeKeys, Selected, read_records, replica_batch_size

from . import COLUMNS

QUANTILES = (0.1, 0.9)
SPEC = {name: tf.io.FixedLenFeature([], tf.float32) for name in (*COLUMNS, "y")}


def _split(row):
    return {name: row[name] for name in COLUMNS}, {"y": row["y"]}


def input_fn(file_pattern, mode, params, input_context=None):
    """Rows of TFRecords (``tf.train.Example`` of a, b, c, y) or of CSV files (a header
    a,b,c,y), by the pattern's suffix."""
    training = mode == ModeKeys.TRAIN
    batch = replica_batch_size(
        params.train_batch_size if training else params.eval_batch_size, input_context
    )
    if file_pattern.endswith(".csv"):
        files = tf.data.Dataset.list_files(file_pattern, shuffle=False)
        lines = files.interleave(lambda f: tf.data.TextLineDataset(f).skip(1))
        defaults = [[0.0]] * (len(COLUMNS) + 1)
        rows = lines.map(
            lambda line: dict(zip((*COLUMNS, "y"), tf.io.decode_csv(line, defaults), strict=True))
        )
        if training:
            rows = rows.shuffle(256, seed=params.random_seed).repeat()
        return rows.batch(batch, drop_remainder=training).map(_split)
    records = read_records(
        file_pattern, training, shuffle_buffer=params.shuffle_buffer, seed=params.random_seed,
        input_context=input_context,
    )  # fmt: skip
    batches = records.batch(batch, drop_remainder=training)
    return batches.map(lambda s: _split(tf.io.parse_example(s, SPEC))).prefetch(2)


def model_fn(params):
    inputs = {name: keras.Input((), name=name) for name in COLUMNS}
    x = keras.layers.Concatenate()([keras.layers.Reshape((1,))(inputs[n]) for n in COLUMNS])
    x = keras.layers.Dense(params.units, activation="relu")(x)
    y = keras.ops.squeeze(keras.layers.Dense(1, name="y")(x), axis=-1)
    quantiles = keras.layers.Dense(len(QUANTILES), name="quantiles")(x)
    return keras.Model(inputs, {"y": y, "quantiles": quantiles})


def loss_fn(labels, outputs, params):
    target = labels["y"]
    error = target[:, None] - outputs["quantiles"]
    q = tf.constant(QUANTILES)
    pinball = tf.reduce_mean(tf.maximum(q * error, (q - 1.0) * error), axis=-1)
    return {"mse": tf.square(target - outputs["y"]), "quantile": params.quantile_weight * pinball}


def optimizer_fn(params, plan):
    return keras.optimizers.Adam(params.learning_rate)


class LabelsMean(keras.metrics.Mean):
    """The mean label of the evaluation set: the same at every evaluation, whatever trains."""

    def update_state(self, labels, outputs, sample_weight=None):
        super().update_state(labels["y"], sample_weight=sample_weight)


def absolute_error(y, predicted):
    return tf.abs(y - predicted)


def metrics_fn(params):
    return {
        # Per example (Keras' MeanAbsoluteError takes a rank-1 batch as one example): each
        # row's error weighs by its sample weight when the input gives one.
        "mae": Selected(keras.metrics.MeanMetricWrapper(absolute_error, name="mae"), "y"),
        "labels_mean": LabelsMean(name="labels_mean"),
    }


def predictions_fn(outputs, params):
    return {"y": outputs["y"], "quantiles": outputs["quantiles"]}


def serving_inputs(params):
    return {name: tf.TensorSpec([None], tf.float32) for name in COLUMNS}


def serving_fn(inputs, params):
    return dict(inputs)


def callbacks_fn(params):
    return [CSVLogger()]
