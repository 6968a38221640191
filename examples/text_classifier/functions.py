"""Input, model, loss, optimizer, metrics, serving and sample of the text classifier: the
feature is a raw string (``text``), the label the id of its package (``module``); the model
turns strings into tokens itself, with the vocabulary ``prepare_fn`` adapted."""

import json
import os

import keras
import tensorflow as tf

from library import InputError, ModeKeys, manifest_paths, read_records, replica_batch_size

from . import LABEL, TEXT, data

SPEC = {
    TEXT: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
}


def parse(serialized):
    """A batch of serialized records as ``({"text": strings}, class ids)``."""
    parsed = tf.io.parse_example(serialized, SPEC)
    return {TEXT: parsed[TEXT]}, tf.cast(parsed[LABEL], tf.int32)


def input_fn(file_pattern, mode, params, input_context=None):
    """Batches of the records ``data.write_records`` writes."""
    training = mode == ModeKeys.TRAIN
    dataset = read_records(
        file_pattern,
        training,
        shuffle_buffer=params.shuffle_buffer,
        seed=params.random_seed,
        input_context=input_context,
    )
    batch = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(replica_batch_size(batch, input_context), drop_remainder=training)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def class_names(file_pattern):
    """The classes the manifests of ``file_pattern``'s records list (``data.write_records``).

    Raises:
        InputError: no manifest lists them, or two list different ones.
    """
    found = []
    for path in manifest_paths(file_pattern):
        with tf.io.gfile.GFile(path) as stream:
            classes = json.load(stream).get("classes")
        if classes:
            found.append((path, classes))
    if not found:
        raise InputError(
            f"{file_pattern}: no manifest beside these records lists their classes; set "
            "modules, or write the records with data.write_records"
        )
    for path, classes in found[1:]:
        if classes != found[0][1]:
            raise InputError(f"{path}: other classes than {found[0][0]}")
    return found[0][1]


def adapted_vocabulary(params):
    """The ``max_tokens`` most frequent tokens of the training texts, as the model's
    ``TextVectorization`` splits them, without the padding and unknown tokens it adds."""
    texts = read_records(params.train_files, training=False).map(
        lambda serialized: tf.io.parse_single_example(serialized, {TEXT: SPEC[TEXT]})[TEXT]
    )
    layer = keras.layers.TextVectorization(max_tokens=params.max_tokens)
    layer.adapt(texts.batch(256))
    return layer.get_vocabulary()[2:]


def prepare_fn(params):
    """What the data decides when the configuration does not say: the classes (from the
    training records' manifest) and the vocabulary (adapted on the training texts). The
    library keeps both in every checkpoint: evaluate, predict and export read no training
    data."""
    decided = {}
    if not params.modules:
        decided["modules"] = class_names(params.train_files)
    if not params.vocabulary:
        decided["vocabulary"] = adapted_vocabulary(params)
    return params.replace(**decided) if decided else params


def model_fn(params):
    """Raw strings -> tokens (``vectorize``: the vocabulary, held in a lookup table that the
    SavedModel keeps) -> token vectors -> their mean over the text (or a 1-D convolution,
    max-pooled) -> dropout -> one logit per package."""
    text = keras.Input((), dtype="string", name=TEXT)
    tokens = keras.layers.TextVectorization(
        vocabulary=list(params.vocabulary),
        output_sequence_length=params.sequence_length,
        name="vectorize",
    )(text)
    vectors = keras.layers.Embedding(
        len(params.vocabulary) + 2, params.embedding_dim, name="embedding"
    )(tokens)
    # Padding (id 0) is no word: pooled over, it would dilute a short text's few tokens.
    # In the vectors' dtype, which mixed precision makes 16-bit.
    present = keras.ops.cast(keras.ops.not_equal(tokens, 0), vectors.dtype)[..., None]
    if params.conv_filters:
        maps = keras.layers.Conv1D(
            params.conv_filters, params.conv_width, padding="same", activation="relu", name="conv"
        )(vectors)
        # After a ReLU nothing is below 0: a padded place, zeroed, never wins the max.
        features = keras.ops.max(maps * present, axis=1)
    else:
        # max(count, 1): a text without tokens (an empty string) pools to zeros, not NaN.
        count = keras.ops.maximum(keras.ops.sum(present, axis=1), 1.0)
        features = keras.ops.sum(vectors * present, axis=1) / count
    features = keras.layers.Dropout(params.dropout_rate)(features)
    logits = keras.layers.Dense(len(params.modules), name="logits")(features)
    return keras.Model({TEXT: text}, logits)


def loss_fn(labels, logits, params):
    """Cross-entropy, per example."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def optimizer_fn(params, plan):
    rate = keras.optimizers.schedules.CosineDecay(params.learning_rate, plan.schedule_steps)
    return keras.optimizers.Adam(rate)


def metrics_fn(params):
    return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def predictions_fn(logits, params):
    """The package's id (``module``), its name (``module_name``) and its probability."""
    probabilities = tf.nn.softmax(logits)
    module = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {
        LABEL: module,
        f"{LABEL}_name": tf.gather(tf.constant(list(params.modules)), module),
        "probability": tf.reduce_max(probabilities, axis=-1),
    }


def serving_inputs(params):
    """The exported model takes a batch of raw strings."""
    return {TEXT: tf.TensorSpec([None], tf.string)}


def serving_fn(inputs, params):
    return {TEXT: inputs[TEXT]}


def sample_fn(folder, params):
    """A few docstrings of each package (4 to train on, 2 to evaluate, 1 to predict) as
    records and JSON lines under ``folder``, and a model to match their size."""
    data.write_dataset(folder, per_class={"train": 4, "validation": 2, "test": 1})
    return {
        "train_files": os.path.join(folder, "train-*.tfrecord"),
        "eval_files": os.path.join(folder, "validation-*.tfrecord"),
        "predict_files": os.path.join(folder, data.JSON_LINES),
        "max_tokens": 200,
        "sequence_length": 32,
        "embedding_dim": 8,
    }
