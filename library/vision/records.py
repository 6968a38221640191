"""The image record schema, defined once and shared by the converter, the writers and the
readers.

It is the schema of TensorFlow's own readers (Model Garden, TF-slim): records they wrote train
here unchanged. An image classifier's records hold the image and an int64 class; a dense
task's hold the image and another label: a float, a float vector (a box), or an encoded mask
(``image/segmentation/class/encoded``, Model Garden's segmentation key). Only the image and
the label are required when reading; the feature keys can be changed (``image_key``,
``label_key``, ``mask_key``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import tensorflow as tf

from library.data.records import example

ENCODED = "image/encoded"
FORMAT = "image/format"
LABEL = "image/class/label"
TEXT = "image/class/text"
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"
MASK = "image/segmentation/class/encoded"
MASK_FORMAT = "image/segmentation/class/format"

Feature: TypeAlias = tf.io.FixedLenFeature | tf.io.VarLenFeature

# The label kinds named by a word; any other is given as its tf.io feature.
LABEL_KINDS: dict[str, tf.io.FixedLenFeature] = {
    "class": tf.io.FixedLenFeature([], tf.int64),  # parsed as int32, as it always was
    "float": tf.io.FixedLenFeature([], tf.float32),
    "mask": tf.io.FixedLenFeature([], tf.string),  # PNG bytes, decoded with the image
}


def label_feature(label: str | Feature) -> Feature:
    """The ``tf.io`` feature of a label kind: ``class``, ``float`` or ``mask`` (see
    ``LABEL_KINDS``), or a feature given as is (``tf.io.FixedLenFeature([4], tf.float32)``
    for a float vector)."""
    if isinstance(label, (tf.io.FixedLenFeature, tf.io.VarLenFeature)):
        return label
    if label not in LABEL_KINDS:
        raise ValueError(
            f"label kind {label!r}: one of {', '.join(LABEL_KINDS)}, or a tf.io.FixedLenFeature"
        )
    return LABEL_KINDS[label]


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


def serialize_image(
    encoded: bytes,
    filename: str = "",
    mask: bytes | None = None,
    features: Mapping[str, Any] | None = None,
) -> bytes:
    """One image with any other features as a serialized ``tf.train.Example``.

    Args:
        encoded: the image's bytes (JPEG, PNG, GIF or BMP); its format, height and width are
            read from its header and written beside it.
        filename: its name, which a diagnosis of a bad record gives (``image/filename``).
        mask: an encoded mask (PNG bytes, see ``png_bytes``), written under ``MASK``.
        features: any other ``{key: value}`` (a class, a box, a value), written as
            ``library.data.records.example`` writes them.

    Raises:
        ValueError: ``encoded`` is no image a header can be read from.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(encoded)) as image:  # the header only: cheap
            width, height, kind = image.width, image.height, (image.format or "").lower()
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"{filename or 'an image'}: not an image ({error})") from None
    values: dict[str, Any] = {
        ENCODED: encoded,
        FORMAT: kind,
        HEIGHT: height,
        WIDTH: width,
        FILENAME: filename,
    }
    if mask is not None:
        values.update({MASK: mask, MASK_FORMAT: "png"})
    values.update(features or {})
    return example(values)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A uint8 array ``[h, w]`` (a mask, a grey image) or ``[h, w, 1 | 3 | 4]`` as PNG bytes:
    lossless, so a mask keeps its exact values (JPEG would blur its edges into new ones)."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise ValueError(f"png_bytes takes uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def feature_spec(
    image_key: str = ENCODED,
    label_key: str | None = LABEL,
    label: str | Feature = "class",
    extra: Mapping[str, Feature] | None = None,
) -> dict:
    """What the reader parses: the image, the label (of kind ``label``; none when
    ``label_key`` is None), the filename when present, and ``extra`` features."""
    spec = {
        image_key: tf.io.FixedLenFeature([], tf.string),
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    if label_key is not None:
        spec[label_key] = label_feature(label)
    spec.update(extra or {})
    return spec


def parse_batch(
    serialized: tf.Tensor,
    image_key: str = ENCODED,
    label_key: str | None = LABEL,
    label: str | Feature = "class",
    extra: Mapping[str, Feature] | None = None,
) -> dict:
    """Parses a batch (or one) of serialized Examples into ``image`` (encoded bytes),
    ``label``, ``filename`` and each ``extra`` feature under its key.

    The label is of kind ``label`` (``label_feature``): an int64 class comes as int32, a
    float or a float vector as float32, a mask as its encoded bytes (decode it beside the
    image, so that crops and flips follow: ``library.vision.images``). With ``label_key``
    None there is no ``label``.

    Parsing a whole batch in one ``tf.io.parse_example`` call is much cheaper than one call
    per record (see BENCHMARKS.md).
    """
    parsed = tf.io.parse_example(serialized, feature_spec(image_key, label_key, label, extra))
    result = {"image": parsed[image_key], "filename": parsed[FILENAME]}
    if label_key is not None:
        value = parsed[label_key]
        result["label"] = tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
    for key in extra or {}:
        result[key] = parsed[key]
    return result
