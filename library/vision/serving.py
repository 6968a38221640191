"""Images in and out of a trained model: the exported model's input (encoded image bytes),
image files read for ``--mode predict``, and the record whose image (or mask, or any encoded
key the project declares) does not decode, or is missing, when training fails on one."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from PIL import Image

from library.base.errors import first_line
from library.data.files import match_files
from library.vision.convert import IMAGE_EXTENSIONS, image_problem
from library.vision.records import FILENAME

IMAGE_BYTES = "image_bytes"


def image_bytes_inputs(params) -> dict[str, tf.TensorSpec]:
    """The serving inputs of an image model: ``image_bytes``, a batch of encoded images
    (JPEG, PNG, GIF, BMP), what TF Serving hands a model as base64 strings."""
    return {IMAGE_BYTES: tf.TensorSpec([None], tf.string)}


def read_image_file(
    path: str, inputs: Mapping, params
) -> Iterable[tuple[str, dict[str, np.ndarray] | str]] | None:
    """A ``predict_reader``: an image file (by its suffix, ``IMAGE_EXTENSIONS``) as
    ``image_bytes``, after decoding it once with PIL, so that a bad file is named and skipped
    instead of failing a batch; None for any other file, which the library's readers read.

    Not a generator itself: a generator function cannot say None.
    """
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return None
    return _read_image(path)


def _read_image(path: str) -> Iterator[tuple[str, dict[str, np.ndarray] | str]]:
    # Read when predict comes to it (the bytes of one image at a time), once: PIL checks
    # the very bytes the model gets, on any file system tf.io.gfile serves.
    with tf.io.gfile.GFile(path, "rb") as stream:
        encoded = stream.read()
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        yield path, image_problem(error)
        return
    yield path, {IMAGE_BYTES: np.asarray(encoded, dtype=object)}


def find_undecodable_image(file_pattern: str, params, error: Exception) -> str | None:
    """A ``diagnose_fn``: for an error about decoding, one line naming the first record of
    ``file_pattern`` whose image (``image_key``) does not decode, or that has none (by its
    ``image/filename``); else None (a model or shape bug: scanning every record would not
    find it)."""
    return _diagnose(file_pattern, [params["image_key"]], error, plain=True)


def undecodable(*keys: str, options: Sequence[str] = ()) -> Callable[..., str | None]:
    """A ``diagnose_fn`` for records of several encoded images (an image and its mask): one
    line naming the first record of the file pattern that lacks one of them, or whose bytes
    under one of them do not decode, with the record's index, its ``image/filename`` and
    the key; None when every record is whole, or for an error that is not about decoding
    or a missing feature (then nothing is scanned).

    Args:
        keys: the feature keys of encoded images, e.g. ``records.ENCODED, records.MASK``.
        options: run options whose values are such keys (``"image_key", "mask_key"``), read
            from the configuration when the diagnosis runs.

    Example::

        diagnose_fn=serving.undecodable(options=("image_key", "mask_key"))
    """
    if not keys and not options:
        raise ValueError("undecodable: name the keys of the encoded images (keys or options)")

    def diagnose_fn(file_pattern: str, params, error: Exception) -> str | None:
        declared = [*keys, *(params[option] for option in options)]
        return _diagnose(file_pattern, list(dict.fromkeys(declared)), error)

    return diagnose_fn


# What TensorFlow's errors say when the bytes of an image do not decode, or a record lacks a
# feature parse_example requires; other errors (shapes, a model bug) are not the data's.
_DATA_WORDS = r"jpeg|png|gif|bmp|decode|image|could not be found|\bfeature\b"


def _diagnose(file_pattern: str, keys: list[str], error: Exception, plain: bool = False):
    message = getattr(error, "message", None) or str(error)
    named = any(key in message for key in keys)
    if not named and not re.search(_DATA_WORDS, message, re.IGNORECASE):
        return None
    for path in match_files(file_pattern):
        found = _first_bad_record(path, keys)
        if found is None:
            continue
        index, name, key, problem = found
        where = f"{path}: record {index} ({name or 'no image/filename'})"
        if problem == "missing":
            return f"{where} has no {key} (a feature every record needs)"
        if plain:
            return f"{where} holds an image that does not decode"
        return f"{where} holds {key} bytes that do not decode as an image ({problem})"
    return None


def _reason(message: str) -> str:
    """TensorFlow's reason without the op's internals (``{{function_node ...}}``, ``[Op:...]``)."""
    text = first_line(message) or "no reason given"
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\]", "", text)
    return text.strip()


def _first_bad_record(path: str, keys: list[str]) -> tuple[int, str, str, str] | None:
    """``(index, file name, key, problem)`` of the first record of ``path`` that lacks one of
    ``keys`` (problem ``missing``) or whose bytes there do not decode (problem: why)."""
    try:
        for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
            feature = tf.train.Example.FromString(serialized.numpy()).features.feature
            names = feature[FILENAME].bytes_list.value if FILENAME in feature else []
            name = names[0].decode("utf-8", "replace") if names else ""
            for key in keys:
                values = feature[key].bytes_list.value if key in feature else []
                if not values:
                    return index, name, key, "missing"
                try:
                    tf.io.decode_image(values[0], expand_animations=False)
                except tf.errors.OpError as error:
                    return index, name, key, _reason(error.message)
    except (tf.errors.OpError, DecodeError):
        # A shard that is no TFRecord file, or records that are no Examples: not what this
        # diagnosis names (the library's own check names corrupt shards).
        return None
    return None
