"""Files for ``--mode predict``, read into the serving inputs a project declares.

A reader takes a path and the declared inputs (``{name: tf.TensorSpec}``, batch dimension
first) and yields ``(row name, values)`` for each example: ``values`` is ``{name: value}``,
or a string saying why that row (or the whole file) cannot be used, which predict names
and skips. Files are read as streams (a row at a time, never a whole file in memory), and
a row is named by the file and the line it starts on (``rows.csv:7``). ``read_file`` picks
a reader by the file's suffix:

* ``.csv``: one example per row, a column per input (a vector or tensor input as a JSON
  list in its cell);
* ``.jsonl`` / ``.json``: one JSON object per line, a key per input;
* ``.tfrecord``: ``tf.train.Example``s with a feature per input (named ``file#index``).

A row that is not UTF-8 text is named and skipped, not the file. Images are not read here:
the image-classification kit's ``read_image_file`` reads an image file into its
``image_bytes`` input (a project wires it as ``predict_reader``, which reads the files it
knows and leaves the others to these readers).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from library.base.errors import first_line
from library.data.records import MANIFEST_SUFFIX

# (row name, {input: value} or why not): these readers' values are arrays, a project's reader
# (predict_reader) gives any that NumPy stacks.
Row = tuple[str, "Mapping[str, Any] | str"]


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
    """The rows of a CSV file with a header, read as a stream, each named by the line it
    starts on (a blank line and a cell over several lines count, as in a text editor)."""
    with tf.io.gfile.GFile(path, "rb") as stream:
        # Bytes that are not UTF-8 become lone surrogates: only the row that holds them is
        # lost, and the reader's line count stays right.
        text = (line.decode("utf-8", "surrogateescape") for line in stream)
        reader = csv.reader(_without_bom(text))
        header = None
        while True:
            first = reader.line_num + 1  # where the next row starts
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield f"{path}:{first}", f"not CSV ({error})"
                continue
            if not cells:  # a blank line
                continue
            bad = next((i for i, cell in enumerate(cells) if not _is_text(cell)), None)
            if header is None:
                if bad is not None:
                    yield f"{path}:{first}", "its header is not UTF-8 text"
                    return
                header = cells
                continue
            if bad is not None:
                column = header[bad] if bad < len(header) else f"cell {bad + 1}"
                yield f"{path}:{first}", f"not UTF-8 text (in {column})"
                continue
            row = dict(zip(header, cells, strict=False))  # a row cut short lacks some
            yield f"{path}:{first}", _row(row.__getitem__, inputs)


def _without_bom(lines: Iterator[str]) -> Iterator[str]:
    """The lines, without the byte-order mark some editors put before the first."""
    for number, line in enumerate(lines):
        yield line.removeprefix("\ufeff") if number == 0 else line


def _is_text(cell: str) -> bool:
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a byte that was not UTF-8
        return False
    return True


def read_json_lines(path: str, inputs: Mapping[str, tf.TensorSpec]) -> Iterator[Row]:
    """One JSON object per line, read as a stream, each named by its line."""
    with tf.io.gfile.GFile(path, "rb") as stream:
        for number, raw in enumerate(stream, 1):
            name = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield name, f"not UTF-8 text (byte {error.start + 1} of the line)"
                continue
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
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
        yield path, f"cannot read the rest ({first_line(error)})"


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


def guarded(path: str, rows: Iterable[Row]) -> Iterator[Row]:
    """``rows`` (the examples a reader gives for ``path``), with a file that cannot be read
    (missing, not allowed, a connection lost) as one more row that names it and says why,
    instead of an exception that would stop predict."""
    read = 0
    try:
        for row in rows:
            read += 1
            yield row
    except (OSError, tf.errors.OpError) as error:
        reason = first_line(error)
        yield path, f"cannot read {'the rest' if read else 'it'} ({reason})"
