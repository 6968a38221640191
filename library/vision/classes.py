"""Classes of an image classifier: read once from a labels file into the configuration
(``prepare``, a project's ``prepare_fn``), and named in predictions (``class_names_of``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from library.data.files import InputError, check_tfrecords, match_files

LABELS_FILE = "labels.txt"


def read_class_names(params: Mapping) -> list[str]:
    """Class names from ``labels_file``, or ``labels.txt`` beside the training files."""
    path = params["labels_file"]
    if not path:
        first = match_files(params["train_files"])[0]
        path = os.path.join(os.path.dirname(first), LABELS_FILE)
    if not tf.io.gfile.exists(path):
        if not params["labels_file"]:  # no labels beside them: are they records at all?
            check_tfrecords(params["train_files"])
        raise InputError(f"{path}: labels file not found (set labels_file, or class_names)")
    with tf.io.gfile.GFile(path) as stream:
        return [line.strip() for line in stream if line.strip()]


def prepare(params):
    """``params`` with ``class_names`` (from the labels file when empty) and ``num_classes``
    (their count when 0) filled in: what a project wires as ``prepare_fn``. A run records
    them in its saved hyperparameters.

    Raises:
        InputError: no labels file to read them from.
    """
    names = list(params["class_names"])
    if not names and not params["num_classes"]:
        names = read_class_names(params)
    elif not names:  # a class count given: names only where a labels file has them
        try:
            names = read_class_names(params)
        except InputError:
            names = []
    changes: dict[str, Any] = {"class_names": names}
    if not params["num_classes"]:
        changes["num_classes"] = len(names)
    return params.replace(**changes)


def class_names_of(classes: tf.Tensor, params: Mapping) -> tf.Tensor | None:
    """The names of predicted class ids (strings), or None when no names are known."""
    names = list(params["class_names"])
    if not names:
        return None
    return tf.gather(tf.constant(names), classes)
