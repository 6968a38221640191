"""Images in and out of a trained classifier: the exported model's input (encoded image
bytes), image files read for ``--mode predict``, and the record whose image does not decode
when training fails on one."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow as tf

from library.data.files import match_files
from library.vision.convert import check_image
from library.vision.records import parse_batch

IMAGE_BYTES = "image_bytes"


def image_bytes_inputs(params) -> dict[str, tf.TensorSpec]:
    """The serving inputs of an image model: ``image_bytes``, a batch of encoded images
    (JPEG, PNG, GIF, BMP), what TF Serving hands a model as base64 strings."""
    return {IMAGE_BYTES: tf.TensorSpec([None], tf.string)}


def read_image_file(path: str, inputs: Mapping, params) -> Iterator[tuple[str, object]]:
    """A ``predict_reader``: an image file as ``image_bytes``, after decoding it once with
    PIL, so that a bad file is named and skipped instead of failing a batch."""
    problem = check_image(path)
    if problem:
        yield path, problem
        return
    with tf.io.gfile.GFile(path, "rb") as stream:
        yield path, {IMAGE_BYTES: np.asarray(stream.read(), dtype=object)}


def find_undecodable_image(file_pattern: str, params, error: Exception) -> str | None:
    """A ``diagnose_fn``: for an error about decoding, one line naming the first record of
    ``file_pattern`` whose image does not decode (by its ``image/filename``); else None
    (a model or shape bug: scanning every record would not find it)."""
    if not re.search(r"jpeg|decode|image", str(error), re.IGNORECASE):
        return None
    for path in match_files(file_pattern):
        for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
            parsed = parse_batch(serialized, params["image_key"], params["label_key"])
            try:
                tf.io.decode_image(parsed["image"], channels=3, expand_animations=False)
            except tf.errors.OpError:
                name = parsed["filename"].numpy().decode() or "(no image/filename)"
                return f"{path}: record {index} ({name}) holds an image that does not decode"
    return None
