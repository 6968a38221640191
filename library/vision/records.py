"""The image record schema, defined once and shared by the converter and the readers.

It is the standard image-classification schema of TensorFlow's own readers (Model Garden,
TF-slim): records they wrote train here unchanged. Only ``image/encoded`` and the label are
required when reading; the feature keys can be changed (``image_key``, ``label_key``).
"""

from __future__ import annotations

import tensorflow as tf

from library.data.records import example

ENCODED = "image/encoded"
FORMAT = "image/format"
LABEL = "image/class/label"
TEXT = "image/class/text"
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"


def serialize_example(
    encoded: bytes, label: int, text: str, height: int, width: int, filename: str
) -> bytes:
    """One image as a serialized ``tf.train.Example`` (JPEG bytes, 0-based label)."""
    return example(
        {
            ENCODED: encoded,
            FORMAT: b"jpeg",
            LABEL: label,
            TEXT: text,
            HEIGHT: height,
            WIDTH: width,
            FILENAME: filename,
        }
    )


def feature_spec(image_key: str = ENCODED, label_key: str = LABEL) -> dict:
    """What the reader parses: the image, the label, and the filename when present."""
    return {
        image_key: tf.io.FixedLenFeature([], tf.string),
        label_key: tf.io.FixedLenFeature([], tf.int64),
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def parse_batch(serialized: tf.Tensor, image_key: str = ENCODED, label_key: str = LABEL) -> dict:
    """Parses a batch (or one) of serialized Examples into ``image``, ``label``, ``filename``.

    Parsing a whole batch in one ``tf.io.parse_example`` call is much cheaper than one call
    per record (see BENCHMARKS.md).
    """
    parsed = tf.io.parse_example(serialized, feature_spec(image_key, label_key))
    return {
        "image": parsed[image_key],
        "label": tf.cast(parsed[label_key], tf.int32),
        "filename": parsed[FILENAME],
    }
