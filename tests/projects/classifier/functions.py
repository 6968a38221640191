"""The tiny classifier's functions, by the library's contract (``library/contract.py``)."""

import keras
import tensorflow as tf

from library import HubModule, ModeKeys, random_seeds, read_records, replica_batch_size
from library.vision import images, records
from library.vision.classes import class_names_of
from library.vision.figures import ClassificationFigures, ImageSummaries


def decode(encoded, params, seed=None):
    """Encoded images to float32 ``[batch, size, size, 3]`` in [0, 1]: a random window,
    maybe flipped, with ``seed``; else the whole image."""
    size = params.image_size

    def resize(image):
        return tf.image.resize(image, [size, size]) / 255.0

    def train(image, seed):
        crop, _ = images.decode_and_random_crop(image, seed, 0.5)
        flipped, _ = images.random_flip(resize(crop), seed)
        return flipped

    if seed is None:
        return images.map_images(
            lambda image: resize(images.decode_and_central_crop(image, 1.0)),
            encoded,
            (size, size, 3),
        )
    return images.map_images(train, encoded, (size, size, 3), seed)


def parse(serialized, params, seed=None):
    parsed = records.parse_batch(serialized, params.image_key, params.label_key)
    features = {"image": decode(parsed["image"], params, seed), "filename": parsed["filename"]}
    return features, parsed["label"]


def input_fn(file_pattern, mode, params, input_context=None):
    training = mode == ModeKeys.TRAIN
    dataset = read_records(
        file_pattern,
        training,
        cycle_length=params.interleave_cycle_length,
        shuffle_buffer=params.shuffle_buffer,
        seed=params.random_seed,
        skip_corrupt=params.skip_corrupt_records,
        input_context=input_context,
    )
    batch = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(replica_batch_size(batch, input_context), drop_remainder=training)
    if training:
        dataset = tf.data.Dataset.zip(dataset, random_seeds(params.random_seed))
        dataset = dataset.map(lambda s, seed: parse(s, params, seed), num_parallel_calls=2)
    else:
        dataset = dataset.map(lambda s: parse(s, params), num_parallel_calls=2)
    return dataset.prefetch(tf.data.AUTOTUNE)


def serving_fn(inputs, params):
    return {"image": decode(inputs["image_bytes"], params)}


def conv(images, params):
    """One block: convolution, batch norm, ReLU and pooling (``block1``: its activations are
    recorded at each evaluation)."""
    x = keras.layers.Conv2D(params.width, 3, padding="same", use_bias=False)(images)
    x = keras.layers.BatchNormalization()(x)  # Keras' momentum 0.99: statistics that lag
    x = keras.layers.MaxPooling2D(name="block1")(keras.layers.ReLU()(x))
    return keras.layers.GlobalAveragePooling2D()(x)


def hub(images, params):
    return HubModule(params.hub_handle, trainable=params.fine_tuning, name="hub")(images)


def model_fn(params):
    images = keras.Input((params.image_size, params.image_size, 3), name="image")
    encoder = conv if params.encoder == "conv" else hub
    features = keras.layers.Identity(name="features")(encoder(images, params))
    x = keras.layers.Dropout(params.dropout_rate)(features)
    logits = keras.layers.Dense(params.num_classes, dtype="float32", name="logits")(x)
    return keras.Model({"image": images}, logits)


def loss_fn(labels, logits, params):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))


def optimizer_fn(params, plan):
    rate = params.learning_rate
    if params.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=plan.schedule_steps)
    return keras.optimizers.Adam(rate)


def metrics_fn(params):
    return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def predictions_fn(logits, params):
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    predictions = {
        "class": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
        "probability": tf.reduce_max(probabilities, axis=-1),
        "probabilities": probabilities,
    }
    names = class_names_of(predictions["class"], params)
    if names is not None:
        predictions["class_name"] = names
    return predictions


def callbacks_fn(params):
    """The image kit's figures, when the run draws figures (plots: true)."""
    if not params.plots:
        return []
    return [ImageSummaries(), ClassificationFigures(params, predictions_fn)]
