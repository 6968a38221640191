"""``--mode predict``: files read into the project's serving inputs, predicted with a
checkpoint, every prediction written to ``predictions.csv``; a bad file or row is named
and skipped."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf

from library.data import readers
from library.outputs.export import predict_function, serving_specs
from library.outputs.files import atomic_write_text

DATA_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError)


def read_rows(paths, functions, params, inputs) -> tuple[list[tuple[str, dict]], int]:
    """The readable examples of ``paths`` as ``(name, values)``, each file through the
    project's ``predict_reader`` (or ``library.data.readers.read_file``); the others are
    named on stderr. Returns them and the count of what was skipped."""
    if functions.predict_reader is not None:

        def read(path):
            return functions.predict_reader(path, inputs, params)

    else:

        def read(path):
            return readers.read_file(path, inputs)

    good, skipped = [], 0
    for path in paths:
        for name, values in read(path):
            if isinstance(values, str):
                print(f"skipped {name}: {values}", file=sys.stderr)
                skipped += 1
            else:
                good.append((name, values))
    return good, skipped


def predict_rows(model, rows, functions, params, batch_size: int) -> list[dict]:
    """One dict of predictions per row (``file`` first), printed as it comes.

    A batch TensorFlow rejects (an image it cannot decode although its reader could) is
    predicted one row at a time and the culprit named and skipped.
    """
    specs = serving_specs(functions, params)
    predict = tf.function(predict_function(model, functions, params), reduce_retracing=True)

    def run(batch):
        inputs = {
            name: tf.constant(np.stack([values[name] for _, values in batch]), spec.dtype)
            for name, spec in specs.items()
        }
        outputs = {k: np.asarray(v) for k, v in predict(inputs).items()}
        return [
            {"file": name, **{k: v[i] for k, v in outputs.items()}}
            for i, (name, _) in enumerate(batch)
        ]

    predicted: list[dict] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        try:
            done = run(batch)
        except DATA_ERRORS:
            done = []
            for row in batch:
                try:
                    done += run([row])
                except DATA_ERRORS as error:
                    reason = error.message.strip().splitlines()[0]
                    print(
                        f"skipped {row[0]}: TensorFlow cannot read it ({reason})", file=sys.stderr
                    )
        for prediction in done:
            print(line(prediction))
        predicted += done
    return predicted


def plain(value):
    """A prediction as CSV text: a scalar as itself, a vector or tensor as a JSON list."""
    array = np.asarray(value)
    if array.dtype.kind in "SO":
        array = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v)(array)
    if array.ndim == 0:
        item = array.item()
        return round(item, 6) if isinstance(item, float) else item
    return json.dumps(np.round(array, 6).tolist() if array.dtype.kind == "f" else array.tolist())


def line(prediction: Mapping) -> str:
    """``file: key value, ...`` of the scalar predictions (vectors are in the CSV only)."""
    shown = []
    for key, value in prediction.items():
        if key == "file" or np.ndim(value):
            continue
        text = plain(value)
        shown.append(f"{key} {text:.3f}" if isinstance(text, float) else f"{key} {text}")
    return f"{prediction['file']}: " + ", ".join(shown)


def to_csv(predictions: list[dict]) -> str:
    columns: list[str] = []
    for prediction in predictions:
        columns += [k for k in prediction if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: plain(v) for k, v in p.items()} for p in predictions)
    return out.getvalue()


def write_predictions(
    path: str, predictions: list[dict], say: Callable[[str], None] = print
) -> None:
    atomic_write_text(path, to_csv(predictions))
    say(f"predictions of {len(predictions)} examples written to {path}")
