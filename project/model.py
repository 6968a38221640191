"""``model_fn(params)``: a head on an encoder, both chosen by name in hyperparameters.yaml;
its metrics, predictions and the recorders of the image kit it uses."""

import keras
import tensorflow as tf

from library import CSVLogger
from library.vision.classes import class_names_of
from library.vision.figures import ClassificationFigures, ImageSummaries

from . import encoders, heads


def model_fn(params):
    """A new Keras model: ``logits = head(encoder(images))``."""
    if params.num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {params.num_classes}")
    encoder = getattr(encoders, params.encoder)
    head = getattr(heads, params.head)
    images = keras.Input((params.image_size, params.image_size, 3), name="image")
    # Named so that --mode export_encoder knows where the encoder ends (encoder_layer).
    features = keras.layers.Identity(name="features")(encoder(images, params))
    logits = head(features, params)
    return keras.Model({"image": images}, logits, name=f"{params.encoder}_{params.head}")


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
    """What the run records beside the library's own: the image kit's figures (input
    pictures and filters in TensorBoard; the best checkpoint's confusion matrix and sample
    predictions) and a CSV of the evaluations (``metrics.csv``)."""
    return [ImageSummaries(), ClassificationFigures(params, predictions_fn), CSVLogger()]
