"""Files for ``--mode predict``, read into the serving inputs a project declares.

A reader takes a path and the declared inputs (``{name: tf.TensorSpec}``, batch dimension
first) and yields ``(row name, values)`` for each example: ``values`` is ``{name: value}``,
or a string saying why that row (or the whole file) cannot be used, which predict names
and skips. ``read_file`` picks a reader by the file's suffix:

* ``.csv``: one example per row, a column per input (a vector or tensor input as a JSON
  list in its cell);
* ``.jsonl`` / ``.json``: one JSON object per line, a key per input;
* ``.tfrecord``: ``tf.train.Example``s with a feature per input.

Images are not read here: the image-classification kit's ``read_image_file`` reads an image
file into its ``image_bytes`` input (a project wires it as ``predict_reader``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow as tf

from library.data.records import MANIFEST_SUFFIX

Row = tuple[str, "dict[str, np.ndarray] | str"]


def parse_value(value, spec: tf.TensorSpec) -> np.ndarray:
    """``value`` (a number, a string, a list, or JSON text of a list) as one example of
    ``spec``: its dtype and its shape without the batch dimension.

    Raises:
        ValueError: saying what is wrong with it.
    """
    shape = [d for d in spec.shape[1:]]
    if spec.dtype == tf.string:
        array = np.asarray(value, dtype=object)
        array = np.vectorize(lambda v: v if isinstance(v, bytes) else str(v).encode())(array)
    else:
        if isinstance(value, str) and value.strip().startswith("["):
            value = json.loads(value)
        try:
            array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (TypeError, ValueError):
            raise ValueError(f"not a {spec.dtype.name} value: {value!r}") from None
    if len(array.shape) != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        wanted = [d if d is not None else "any" for d in shape]
        raise ValueError(f"shape {list(array.shape)}, the input takes {wanted}")
    return array


def _row(get, inputs: Mapping[str, tf.TensorSpec]) -> dict[str, np.ndarray] | str:
    values = {}
    for name, spec in inputs.items():
        try:
            value = get(name)
        except KeyError:
            return f"no {name!r} (the model's inputs: {', '.join(inputs)})"
        try:
            values[name] = parse_value(value, spec)
        except (ValueError, json.JSONDecodeError) as error:
            return f"{name}: {error}"
    return values


def read_csv(path: str, inputs: Mapping[str, tf.TensorSpec]) -> Iterator[Row]:
    with tf.io.gfile.GFile(path) as stream:
        text = stream.read()
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), 2):  # line 1: the header
        yield f"{path}:{number}", _row(lambda name, r=row: _cell(r, name), inputs)


def _cell(row: dict, name: str) -> str:
    if row.get(name) is None:  # a missing column, or a row cut short
        raise KeyError(name)
    return row[name]


def read_json_lines(path: str, inputs: Mapping[str, tf.TensorSpec]) -> Iterator[Row]:
    with tf.io.gfile.GFile(path) as stream:
        lines = stream.read().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield name, f"not JSON ({error.msg})"
            continue
        if not isinstance(record, dict):
            yield name, "not a JSON object"
            continue
        yield name, _row(record.__getitem__, inputs)


def read_tfrecord(path: str, inputs: Mapping[str, tf.TensorSpec]) -> Iterator[Row]:
    try:
        for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
            feature = tf.train.Example.FromString(serialized.numpy()).features.feature
            yield f"{path}#{index}", _row(lambda name, f=feature: _feature(f, name), inputs)
    except tf.errors.OpError as error:
        yield path, f"cannot read the rest ({error.message.strip().splitlines()[0]})"


def _feature(features, name: str):
    if name not in features:
        raise KeyError(name)
    kind = features[name].WhichOneof("kind")
    values = list(getattr(features[name], kind).value) if kind else []
    return values[0] if len(values) == 1 else values


READERS = {
    ".csv": read_csv,
    ".jsonl": read_json_lines,
    ".json": read_json_lines,
    ".tfrecord": read_tfrecord,
}


def read_file(path: str, inputs: Mapping[str, tf.TensorSpec]) -> Iterator[Row]:
    """The examples of ``path``, by its suffix (``READERS``); none of a records manifest
    (a folder of the library's records holds one beside its shards)."""
    if path.endswith(MANIFEST_SUFFIX):
        return
    suffix = next((s for s in READERS if path.lower().endswith(s)), None)
    if suffix is None:
        yield path, f"not a file predict reads ({', '.join(READERS)}, or a project's reader)"
        return
    yield from READERS[suffix](path, inputs)
