"""Input, model (one encoder, a class head and a box head), loss terms, metrics, serving."""

import keras
import tensorflow as tf

from library import CSVLogger, ModeKeys, Selected, random_seeds, read_records, replica_batch_size
from library.vision import images, records
from library.vision.classes import class_names_of
from library.vision.figures import BoxFigures, ClassificationFigures, ImageSummaries

from . import BOX_KEY


def decode(encoded, boxes, params, seed=None):
    """Images as float32 ``[size, size, 3]`` in [0, 1] and their boxes: with ``seed``, a
    random crop that keeps the digit whole, its box moved into the crop."""
    size = params.image_size

    def one(element, seed=None):
        image, box = element
        if seed is None:
            picture = tf.io.decode_image(image, channels=3, expand_animations=False)
        else:
            picture, window = images.decode_and_random_crop(
                image, seed, params.crop_min_area, keep=box
            )
            box = images.boxes_in_window(box, window)
        picture = tf.image.resize(picture, [size, size]) / 255.0
        return picture, box

    signature = (tf.TensorSpec([size, size, 3], tf.float32), tf.TensorSpec([4], tf.float32))
    return images.map_images(one, (encoded, boxes), (size, size, 3), seed, signature)


def parse(serialized, params, seed=None):
    spec = {
        params.image_key: tf.io.FixedLenFeature([], tf.string),
        params.label_key: tf.io.FixedLenFeature([], tf.int64),
        BOX_KEY: tf.io.FixedLenFeature([4], tf.float32),
        records.FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    parsed = tf.io.parse_example(serialized, spec)
    picture, box = decode(parsed[params.image_key], parsed[BOX_KEY], params, seed)
    features = {"image": picture, "filename": parsed[records.FILENAME]}
    return features, {"class": tf.cast(parsed[params.label_key], tf.int32), "box": box}


def input_fn(file_pattern, mode, params, input_context=None):
    training = mode == ModeKeys.TRAIN
    dataset = read_records(
        file_pattern, training, shuffle_buffer=params.shuffle_buffer, seed=params.random_seed,
        input_context=input_context,
    )  # fmt: skip
    batch = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(replica_batch_size(batch, input_context), drop_remainder=training)
    if training:
        dataset = tf.data.Dataset.zip(dataset, random_seeds(params.random_seed))
        dataset = dataset.map(lambda s, seed: parse(s, params, seed), num_parallel_calls=tf.data.AUTOTUNE)  # fmt: skip
    else:
        dataset = dataset.map(lambda s: parse(s, params), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def serving_fn(inputs, params):
    """The exported model's features from encoded images (the kit's ``image_bytes``)."""
    encoded = inputs["image_bytes"]
    no_boxes = tf.zeros([tf.shape(encoded)[0], 4])
    pictures, _ = decode(encoded, no_boxes, params)
    return {"image": pictures}


def model_fn(params):
    """Convolution blocks (``block1``...), then a class head on the pooled features and a box
    head on the flattened map."""
    size = params.image_size
    images_in = keras.Input((size, size, 3), name="image")
    x = images_in
    for index, filters in enumerate(params.filters, 1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        x = keras.layers.MaxPooling2D(name=f"block{index}")(x)
    pooled = keras.layers.GlobalMaxPooling2D()(x)  # the digit, wherever it is on the canvas
    logits = keras.layers.Dense(params.num_classes, name="class")(pooled)
    where = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)  # the box's own
    hidden = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(where))
    box = keras.layers.Dense(4, name="box")(hidden)  # linear: a sigmoid saturates and stops
    return keras.Model({"image": images_in}, {"class": logits, "box": box})


def loss_fn(labels, outputs, params):
    """Two named per-example terms: the class's cross-entropy and the box's Huber loss."""
    classes = tf.nn.sparse_softmax_cross_entropy_with_logits(labels["class"], outputs["class"])
    error = tf.abs(labels["box"] - outputs["box"])
    huber = tf.reduce_mean(tf.where(error < 0.05, 0.5 * error**2 / 0.05, error - 0.025), axis=-1)
    return {"class": classes, "box": params.box_weight * huber}


def optimizer_fn(params, plan):
    rate = keras.optimizers.schedules.CosineDecay(params.learning_rate, plan.schedule_steps)
    return keras.optimizers.Adam(rate)


def iou(true_boxes, predicted):
    """Intersection over union of ``[..., 4]`` boxes ``[ymin, xmin, ymax, xmax]``."""
    low = tf.maximum(true_boxes[..., :2], predicted[..., :2])
    high = tf.minimum(true_boxes[..., 2:], predicted[..., 2:])
    intersection = tf.reduce_prod(tf.maximum(high - low, 0.0), axis=-1)

    def area(b):
        return tf.reduce_prod(tf.maximum(b[..., 2:] - b[..., :2], 0.0), axis=-1)

    return intersection / (area(true_boxes) + area(predicted) - intersection + 1e-7)


class BoxIoU(keras.metrics.Mean):
    """The mean intersection over union of the predicted and true boxes."""

    def update_state(self, true_boxes, predicted, sample_weight=None):
        super().update_state(iou(true_boxes, predicted), sample_weight)


def metrics_fn(params):
    return {
        "accuracy": Selected(keras.metrics.SparseCategoricalAccuracy(name="accuracy"), "class"),
        "box_iou": Selected(BoxIoU(name="box_iou"), "box"),
    }


def predictions_fn(outputs, params):
    probabilities = tf.nn.softmax(outputs["class"])
    predictions = {
        "class": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
        "probability": tf.reduce_max(probabilities, axis=-1),
        "box": outputs["box"],
    }
    if params.class_names:  # the digits' names, when the configuration gives them
        predictions["class_name"] = class_names_of(predictions["class"], params)
    return predictions


def callbacks_fn(params):
    """The kit's figures (the class head's confusion matrix and samples; canvases with their
    true and predicted boxes, in TensorBoard at each evaluation and as ``boxes.png`` at each
    new best) and a CSV log."""
    recorders = [CSVLogger()]
    if params.plots:
        recorders += [
            ImageSummaries(),
            ClassificationFigures(params, predictions_fn, label="class"),
            BoxFigures(label="box", output="box"),
        ]
    return recorders
