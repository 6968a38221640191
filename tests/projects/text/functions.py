"""The text classifier's functions: features ``{"text": string}``, an int label; the model
vectorizes the raw strings itself."""

import keras
import tensorflow as tf

from library import ModeKeys, read_records, replica_batch_size

SPEC = {
    "text": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def _parse(serialized):
    parsed = tf.io.parse_example(serialized, SPEC)
    return {"text": parsed["text"]}, tf.cast(parsed["label"], tf.int32)


def input_fn(file_pattern, mode, params, input_context=None):
    training = mode == ModeKeys.TRAIN
    records = read_records(
        file_pattern, training, shuffle_buffer=64, seed=params.random_seed,
        input_context=input_context,
    )  # fmt: skip
    batch = params.train_batch_size if training else params.eval_batch_size
    batches = records.batch(replica_batch_size(batch, input_context), drop_remainder=training)  # fmt: skip
    return batches.map(_parse)


def prepare_fn(params):
    """The vocabulary, adapted on the training texts when none is given."""
    if params.vocabulary:
        return params
    texts = read_records(params.train_files, training=False).map(
        lambda s: tf.io.parse_single_example(s, SPEC)["text"]
    )
    layer = keras.layers.TextVectorization(max_tokens=params.max_tokens)
    layer.adapt(texts.batch(64))
    return params.replace(vocabulary=layer.get_vocabulary()[2:])  # without '' and [UNK]


def model_fn(params):
    text = keras.Input((), dtype="string", name="text")
    tokens = keras.layers.TextVectorization(
        vocabulary=list(params.vocabulary),
        output_sequence_length=params.sequence_length,
        name="vectorize",
    )(text)
    x = keras.layers.Embedding(len(params.vocabulary) + 2, params.embedding_dim)(tokens)
    x = keras.layers.GlobalAveragePooling1D()(x)
    logits = keras.layers.Dense(params.num_classes, name="logits")(x)
    return keras.Model({"text": text}, logits)


def loss_fn(labels, logits, params):
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def optimizer_fn(params, plan):
    return keras.optimizers.Adam(params.learning_rate)


def metrics_fn(params):
    return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def predictions_fn(logits, params):
    probabilities = tf.nn.softmax(logits)
    return {
        "class": tf.argmax(probabilities, -1, output_type=tf.int32),
        "probability": tf.reduce_max(probabilities, -1),
    }


def serving_inputs(params):
    return {"text": tf.TensorSpec([None], tf.string)}


def serving_fn(inputs, params):
    return {"text": inputs["text"]}
