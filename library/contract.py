"""THE CONTRACT between ``project/`` and the library (the only place it is written down).

A project provides pure functions; ``run.py`` hands them to the library by these names. The
library assumes nothing about the task: features, labels and outputs are any nested
structure of tensors (a dict of named tensors is the usual one).

Required:

* ``input_fn(file_pattern, mode, params, input_context=None) -> tf.data.Dataset`` of
  ``(features, labels)`` batches. ``mode`` is a ``ModeKeys`` value. ``input_context`` is a
  ``tf.distribute.InputContext`` (None on one device): batch by
  ``library.data.pipeline.replica_batch_size`` and read TFRecords through
  ``library.data.pipeline.read_records`` so that each replica gets its share. String
  features (file names) are dropped on the way to the devices. The Estimator itself takes
  input functions of one optional argument, the input context (or of none).
* ``model_fn(params) -> keras.Model``: a new, built model each call, called with
  ``training=True`` in training and ``False`` in evaluation and prediction (train and eval
  share weights but differ in dropout and batch norm), inside the strategy's scope. A
  dict-input model gets the features it names.
* ``loss_fn(labels, outputs, params)`` -> a per-example loss, or a dict of named per-example
  terms (already weighted by the project): the library trains their sum, averaged over the
  global batch, plus the model's regularisation losses, and logs every term beside it
  (``loss/<term>``).
* ``optimizer_fn(params, plan) -> keras.optimizers.Optimizer`` with its learning-rate
  schedule; ``plan`` (``library.engine.schedule.Plan``) gives the run's lengths in steps:
  ``plan.schedule_steps`` (the schedule's length, kept across resumes),
  ``plan.steps_per_epoch`` (0 when the records are not counted) and ``plan.steps(epochs)``.
  The rate must be a function of the step alone, so that a resumed run continues it exactly.

Optional:

* ``metrics_fn(params) -> {name: keras.metrics.Metric}``, each updated with
  ``(labels, outputs)`` (``library.engine.metrics.Selected`` picks one part of each);
  their names are what ``METRICS`` declares and ``best_metric`` may name.
* ``predictions_fn(outputs, params) -> {name: tensor}`` (default ``{"outputs": outputs}``):
  what export, predict and the figures give.
* ``serving_inputs(params) -> {name: tf.TensorSpec}`` (batch dimension first) and
  ``serving_fn(inputs, params) -> features``: the exported model's signature and how it
  turns a batch of those inputs into features. ``--mode predict`` reads its files into
  these inputs too.
* ``predict_reader(path, inputs, params)`` -> ``(row name, {input: value} or a reason)``
  for each example of one file (default: ``library.data.readers.read_file``: CSV, JSON
  lines, TFRecords).
* ``callbacks_fn(params) -> [Recorder | Action]``: the project's recorders (each training
  log, each evaluation, in training and in continuous evaluation) and actions (every N
  steps); see ``library.recorders``.
* ``prepare_fn(params) -> params``: what the data decides, filled in once before anything
  is built (e.g. the classes of a labels file); called after TensorFlow loads.
* ``diagnose_fn(file_pattern, params, error) -> str | None``: one line naming the record
  behind a data error (``error``, TensorFlow's) that the library's own check (corrupt
  shards) does not find.

``params`` is the resolved, frozen configuration (``library.config.Params``: a mapping with
attribute access). Its keys are the library's run options and what the project declares in
``project/hyperparameters.py`` (``HYPERPARAMETERS``, optional ``RUN_OPTIONS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


class ModeKeys:
    """What a function is being called for, as in tf.estimator."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "predict"


def _no_metrics(params) -> dict:
    return {}


def _outputs(outputs, params) -> dict:
    return {"outputs": outputs}


def _no_callbacks(params) -> list:
    return []


@dataclass(frozen=True)
class Functions:
    """The project's functions, by contract name (optional ones have defaults)."""

    model_fn: Callable
    loss_fn: Callable
    optimizer_fn: Callable
    input_fn: Callable | None = None
    metrics_fn: Callable = _no_metrics
    predictions_fn: Callable = _outputs
    serving_inputs: Callable | None = None
    serving_fn: Callable | None = None
    predict_reader: Callable | None = None
    callbacks_fn: Callable = _no_callbacks
    prepare_fn: Callable | None = None
    diagnose_fn: Callable | None = None

    @classmethod
    def from_mapping(cls, functions: Mapping[str, Callable]) -> Functions:
        """From ``{"model_fn": ..., ...}`` as ``run.py`` builds it; unknown names are errors."""
        unknown = set(functions) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"not a contract function: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in functions.items() if v is not None})


def model_inputs(model, features):
    """The features the model takes: a dict-input model ignores extras such as ``filename``."""
    if isinstance(features, Mapping) and isinstance(getattr(model, "input", None), Mapping):
        return {name: features[name] for name in model.input}
    return features
