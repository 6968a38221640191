"""The TFRecord schema, defined once and shared by the writer and the reader.

It is the standard image-classification schema of TensorFlow's own readers (Model Garden,
TF-slim): records they wrote train here unchanged. Only ``image/encoded`` and the label are
required when reading; the feature keys can be changed (``image_key``, ``label_key``) for
other schemas.
"""

from __future__ import annotations

import tensorflow as tf

ENCODED = "image/encoded"
FORMAT = "image/format"
LABEL = "image/class/label"
TEXT = "image/class/text"
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def serialize_example(
    encoded: bytes, label: int, text: str, height: int, width: int, filename: str
) -> bytes:
    """One image as a serialized ``tf.train.Example`` (JPEG bytes, 0-based label)."""
    feature = {
        ENCODED: _bytes(encoded),
        FORMAT: _bytes(b"jpeg"),
        LABEL: _int64(label),
        TEXT: _bytes(text.encode("utf-8")),
        HEIGHT: _int64(height),
        WIDTH: _int64(width),
        FILENAME: _bytes(filename.encode("utf-8")),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


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
