"""``--mode predict``: files read as a stream into the project's serving inputs, predicted
with a checkpoint batch by batch, and every key of ``predictions_fn`` written to a CSV as
each batch comes (memory does not grow with the number of rows); a bad file or row is named
and skipped.

Each key is written per example: a scalar (a number, a bool, UTF-8 text) as a column, an
array of at most ``SMALL_ARRAY`` values as a JSON list in its cell; bytes that are not
UTF-8 text and larger arrays as one file per example and key, in the folder named after
the CSV (``predictions.csv`` -> ``predictions/``) and named in the cell by its path from the
CSV's folder (``predictions/000012-mask.png``): encoded images by their format, other
bytes raw (``.bin``), arrays as ``.npy`` (``np.load`` reads them). The CSV is written under a
temporary name and renamed into place when complete; an existing one is never replaced.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from library.base import files as run_files
from library.base.errors import first_line
from library.config import Params
from library.contract import Functions
from library.data import readers
from library.data.files import InputError
from library.outputs.export import ExportError, predict_function, serving_specs

DATA_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError)
SMALL_ARRAY = 64  # values per example: at most this many go into a cell as a JSON list
SHOWN_ROWS = 20  # predictions printed one line each; after them, a count
COUNT_EVERY = 10_000  # rows between two counts
IMAGE_SUFFIXES = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"))

Row = readers.Row


# -- reading ----------------------------------------------------------------------------------


def stream_rows(
    paths: Iterable[str], functions: Functions, params: Params, inputs: Mapping[str, tf.TensorSpec]
) -> Iterator[Row]:
    """The examples of ``paths`` as ``(name, values or why not)``, one at a time: each file
    through the project's ``predict_reader`` when it reads it (it returns None for a file it
    does not), else through the library's readers (``library.data.readers.read_file``). A
    file that cannot be read is one row that names it and says why."""
    for path in paths:
        yield from readers.guarded(path, _read(path, functions, params, inputs))


def _read(
    path: str, functions: Functions, params: Params, inputs: Mapping[str, tf.TensorSpec]
) -> Iterator[Row]:
    rows = None
    if functions.predict_reader is not None:
        rows = functions.predict_reader(path, inputs, params)
    yield from readers.read_file(path, inputs) if rows is None else rows


def read_rows(
    paths: Iterable[str], functions: Functions, params: Params, inputs: Mapping[str, tf.TensorSpec]
) -> tuple[list[tuple[str, Mapping[str, Any]]], int]:
    """The readable examples of ``paths`` as a list of ``(name, values)`` (for a few files:
    predict itself streams them), the others named on stderr, and the count of those."""
    good, skipped = [], 0
    for name, values in stream_rows(paths, functions, params, inputs):
        if isinstance(values, str):
            print(f"skipped {name}: {values}", file=sys.stderr)
            skipped += 1
        else:
            good.append((name, values))
    return good, skipped


# -- writing ----------------------------------------------------------------------------------


def predictions_folder(path: str) -> str:
    """The folder of the files a CSV of predictions names: its path without the suffix
    (``predictions.csv`` -> ``predictions``), or ``NAME.files`` for a name without one."""
    root, suffix = os.path.splitext(path)
    return root if suffix else f"{path}.files"


def check_free(path: str) -> None:
    """Refuses, before anything is predicted, predictions that would replace others.

    Raises:
        InputError: ``path`` or its folder of files exists, with the ways out.
    """
    folder = predictions_folder(path)
    for taken, what in ((path, "it exists"), (folder, f"the folder of {path}'s files exists")):
        if run_files.exists(taken):
            raise InputError(
                f"{taken}: {what} (an earlier predict's?) and predict replaces nothing: give "
                "another --predictions_file, or remove it"
            )


def _file_key(key: str) -> str:
    """``key`` as a part of a file name on any file system; two keys that come out alike
    are told apart by their hash."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", key).strip("_")[:64]
    if safe != key:
        safe = f"{safe or 'key'}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return safe


def _bytes_suffix(data: bytes) -> str:
    return next((s for magic, s in IMAGE_SUFFIXES if data.startswith(magic)), ".bin")


def _texts(values: Iterable) -> list[str] | None:
    """Bytes (or strings) as text; None when any is not UTF-8."""
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    except UnicodeDecodeError:
        return None


def _npy(array: np.ndarray) -> bytes:
    """``array`` as a .npy file. Strings are saved as text (``U``), or as bytes (``S``, which
    drops trailing NUL bytes) when one is not UTF-8: objects would need a pickle, which
    ``np.load`` refuses by default."""
    if array.dtype.kind == "O":
        texts = _texts(array.ravel())
        flat = np.asarray(texts if texts is not None else list(array.ravel()))
        array = flat.reshape(array.shape)
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _json_list(array: np.ndarray) -> str:
    if array.dtype.kind == "f":
        return json.dumps(np.round(array.astype(np.float64), 6).tolist())
    if array.dtype.kind in "SO":
        return json.dumps(np.asarray(_texts(array.ravel())).reshape(array.shape).tolist())
    return json.dumps(array.tolist())


class PredictionsWriter:
    """The CSV of predictions, a row per example appended as batches come, under a temporary
    name beside ``path`` until ``close`` renames it into place; what a cell cannot hold goes
    to files in a temporary folder that becomes ``predictions_folder(path)``.

    Everything goes through ``tf.io.gfile`` (``library.base.files``): remote paths work.
    """

    def __init__(self, path: str):
        self.path = path
        self.folder = predictions_folder(path)
        self.rows = 0  # written so far
        self.files = 0
        self.columns: list[str] = []
        # Hidden siblings (.NAME.tmp-PID), not NAME.tmp-PID: some file systems (ram://) say
        # NAME exists when a longer name starts with it.
        self._temporary = run_files.temporary_folder(path)
        self._temporary_folder = run_files.temporary_folder(self.folder)
        self._stream: tf.io.gfile.GFile | None = None  # opened by the first write
        self._file_keys: dict[str, str] = {}

    def write(self, names: Sequence[str], outputs: Mapping[str, np.ndarray]) -> list[dict]:
        """Appends a batch: its rows' ``names`` and each key's values for them (batch
        dimension first). Returns each row's cells (``file`` first), by column."""
        if self._stream is None:
            # The columns are the keys of the first batch, in their order, for the whole file.
            self.columns = list(outputs)
            self._file_keys = {key: _file_key(str(key)) for key in self.columns}
            parent = os.path.dirname(self.path)
            if parent:
                tf.io.gfile.makedirs(parent)
            self._stream = tf.io.gfile.GFile(self._temporary, "w")
            self._append([["file", *self.columns]])
        cells = {
            key: self._cells(key, np.asarray(outputs[key]), len(names)) for key in self.columns
        }
        rows = [
            {"file": name, **{key: cells[key][i] for key in self.columns}}
            for i, name in enumerate(names)
        ]
        self._append([list(row.values()) for row in rows])
        self.rows += len(names)
        return rows

    def _append(self, lines: list[list]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(lines)
        assert self._stream is not None  # opened by write(), the only caller
        self._stream.write(text.getvalue())

    def _cells(self, key: str, values: np.ndarray, count: int) -> list:
        """The cells of one key for a batch (vectorised where the kind allows).

        Raises:
            ExportError: ``values`` has no value per example.
        """
        if values.ndim == 0 or len(values) != count:
            raise ExportError(
                f"predictions_fn's {key!r} has shape {list(values.shape)}: it must give one "
                f"value per example ({count} in this batch), the batch dimension first"
            )
        kind = values.dtype.kind
        if values.ndim == 1 and kind == "f":
            return np.round(values.astype(np.float64), 6).tolist()
        if values.ndim == 1 and kind in "biu":
            return values.tolist()
        if values.ndim == 1 and kind in "SO":
            return [self._bytes_cell(key, i, v) for i, v in enumerate(values)]
        if values.ndim == 1:
            return [str(v) for v in values]
        if values[0].size > SMALL_ARRAY:
            return [self._file(key, i, ".npy", _npy(v)) for i, v in enumerate(values)]
        cells = []
        for i, value in enumerate(values):
            if kind in "SO" and _texts(value.ravel()) is None:  # bytes no JSON list can hold
                cells.append(self._file(key, i, ".npy", _npy(value)))
            else:
                cells.append(_json_list(value))
        return cells

    def _bytes_cell(self, key: str, index: int, value) -> str:
        if not isinstance(value, bytes):
            return str(value)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:  # an encoded image, or other bytes: a file of their own
            return self._file(key, index, _bytes_suffix(value), value)

    def _file(self, key: str, index: int, suffix: str, data: bytes) -> str:
        """Writes one example's value of ``key``; returns its path from the CSV's folder."""
        if not self.files:
            tf.io.gfile.makedirs(self._temporary_folder)
        name = f"{self.rows + index:06d}-{self._file_keys[key]}{suffix}"
        with tf.io.gfile.GFile(os.path.join(self._temporary_folder, name), "wb") as stream:
            stream.write(data)
        self.files += 1
        return f"{os.path.basename(self.folder)}/{name}"

    def close(self) -> None:
        """Puts the files, then the CSV, in place (the CSV names files that are there)."""
        if self._stream is None:
            raise ValueError("no predictions were written")
        self._stream.close()
        if self.files:
            run_files.move_tree(self._temporary_folder, self.folder)
        tf.io.gfile.rename(self._temporary, self.path, overwrite=False)

    def discard(self) -> None:
        """Removes what was written (predict failed or was stopped)."""
        if self._stream is not None:
            self._stream.close()
            if run_files.exists(self._temporary):
                run_files.remove(self._temporary)
        if run_files.exists(self._temporary_folder):
            run_files.remove_tree(self._temporary_folder)


# -- predicting -------------------------------------------------------------------------------


def predict_to_csv(
    estimator,
    functions: Functions,
    prefix: str,
    paths: Sequence[str],
    path: str,
    say: Callable[[str], None] = print,
) -> int:
    """Predicts the examples of ``paths`` with the checkpoint ``prefix`` into the CSV
    ``path``, ``eval_batch_size`` rows at a time; returns the number predicted.

    Args:
        estimator: the Estimator of the run (``estimator.params`` is its configuration).
        functions: the project's functions (``serving_inputs``, ``serving_fn``,
            ``predictions_fn``, maybe ``predict_reader``).
        prefix: the checkpoint to predict with.
        paths: the files to read, in order.
        path: the CSV to write (with the folder ``predictions_folder(path)`` for files).
        say: where the progress lines go.

    Raises:
        InputError: ``path`` or its folder exists (before anything is read), or no example
            could be predicted.
    """
    check_free(path)
    params = estimator.params
    specs = serving_specs(functions, params)
    counts = {"skipped": 0}
    writer = PredictionsWriter(path)
    predict = None
    try:
        rows = _good_rows(stream_rows(paths, functions, params, specs), counts)
        while batch := list(itertools.islice(rows, params.eval_batch_size)):
            if predict is None:  # the model only once there is something to predict
                files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
                say(f"predicting the examples of {files} with {prefix} into {path}")
                model, _ = estimator.restore_model(prefix)
                function = predict_function(model, functions, params)
                predict = tf.function(function, reduce_retracing=True)
            for names, outputs in _predicted(predict, specs, batch, counts):
                done = writer.rows
                shown = [k for k in writer.columns or outputs if np.ndim(outputs[k]) == 1]
                for row in writer.write(names, outputs):
                    done += 1
                    if done <= SHOWN_ROWS:
                        say(line({k: row[k] for k in ("file", *shown)}))
                    elif done % COUNT_EVERY == 0:
                        say(f"{done} examples predicted, {counts['skipped']} skipped")
                if done > SHOWN_ROWS >= done - len(names):
                    say(f"(further predictions go to {path} only, a count every {COUNT_EVERY})")
        if not writer.rows:
            raise InputError(
                f"{params.predict_files}: nothing to predict in {len(paths)} files "
                f"({counts['skipped']} examples skipped); the model takes {', '.join(specs)}"
            )
        writer.close()
    except BaseException:
        writer.discard()
        raise
    files = f" and {writer.files} files in {writer.folder}/" if writer.files else ""
    skipped = f" ({counts['skipped']} skipped)" if counts["skipped"] else ""
    say(f"predictions of {writer.rows} examples written to {path}{files}{skipped}")
    return writer.rows


def _good_rows(rows: Iterable[Row], counts: dict) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, values in rows:
        if isinstance(values, str):
            print(f"skipped {name}: {values}", file=sys.stderr)
            counts["skipped"] += 1
        else:
            yield name, values


def _predicted(
    predict: Callable, specs: Mapping[str, tf.TensorSpec], batch: list, counts: dict
) -> Iterator[tuple[list[str], dict[str, np.ndarray]]]:
    """``(names, outputs)`` of a batch; a batch TensorFlow rejects (an image it cannot
    decode although its reader could) is predicted one row at a time, the culprit named and
    skipped."""

    def run(rows):
        inputs = {
            name: tf.constant(np.stack([values[name] for _, values in rows]), spec.dtype)
            for name, spec in specs.items()
        }
        return [name for name, _ in rows], {k: v.numpy() for k, v in predict(inputs).items()}

    try:
        yield run(batch)
        return
    except DATA_ERRORS:
        pass
    except ValueError:  # inputs of different shapes (None in a spec) do not stack: one by one
        if len(batch) == 1:
            raise
    for row in batch:
        try:
            yield run([row])
        except DATA_ERRORS as error:
            reason = first_line(error)
            print(f"skipped {row[0]}: TensorFlow cannot read it ({reason})", file=sys.stderr)
            counts["skipped"] += 1


def line(row: Mapping[str, object]) -> str:
    """``file: key value, ...`` of a row's cells (a float to 3 decimals)."""
    shown = [
        f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in row.items()
        if key != "file"
    ]
    return f"{row['file']}: " + ", ".join(shown)
