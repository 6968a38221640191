"""THE CONTRACT between a project and the library (the only place it is written down).

A project is a Python package (``project/``; the examples and the test projects are others)
whose ``__init__.py`` declares, without importing TensorFlow:

* ``HYPERPARAMETERS``: the keys of hyperparameters.yaml (``library.config.Field``s);
* ``METRICS`` (optional): the names ``metrics_fn`` returns, which ``best_metric`` may name;
* ``RUN_OPTIONS`` (optional): keys of project.yaml it adds to the library's;
* ``check(params)`` (optional): rules that tie keys together (``ValueError``: one line);
* ``onednn_off(params)`` (optional): whether training must run without oneDNN;
* ``load_functions()``: its functions by the names below, as a ``Functions`` (or a mapping),
  imported inside it: the configuration is checked before TensorFlow loads.

``run.py`` hands the package to ``library.cli.main`` and is the same file for every task. The
library assumes nothing about the task: features, labels and outputs are any nested structure
of tensors (a dict of named tensors is the usual one), of any dtype, strings included.

Required functions:

* ``input_fn(file_pattern, mode, params, input_context=None) -> tf.data.Dataset`` of
  ``(features, labels)`` batches. ``mode`` is a ``ModeKeys`` value. ``input_context`` is a
  ``tf.distribute.InputContext`` (None on one device): batch by
  ``library.data.pipeline.replica_batch_size`` and read TFRecords through
  ``library.data.pipeline.read_records`` so that each replica gets its share. It may read
  no files at all (a generator, an array in memory): lengths are then given in steps, or
  ``train_records`` says how many examples make an epoch. Features the model does not
  take (a file name, say) are dropped on the way to the devices; those it takes reach it
  whatever their dtype. The Estimator itself takes input functions of one optional
  argument, the input context (or of none).
* ``model_fn(params) -> keras.Model``: a new, built model each call, called with
  ``training=True`` in training and ``False`` in evaluation and prediction (train and eval
  share weights but differ in dropout and batch norm), inside the strategy's scope. A
  dict-input model gets the features it names. Lookup tables and vocabularies inside it
  (``TextVectorization``, ``StringLookup``) are exported with it.
* ``loss_fn(labels, outputs, params)`` -> a per-example loss, or a dict of named per-example
  terms (already weighted by the project): the library trains their sum, averaged over the
  global batch, plus the model's regularisation losses, and logs every term beside it
  (``loss/<term>``).
* ``optimizer_fn(params, plan) -> keras.optimizers.Optimizer`` with its learning-rate
  schedule; ``plan`` (``library.engine.schedule.Plan``) gives the run's lengths in steps:
  ``plan.schedule_steps`` (the schedule's length, kept across resumes),
  ``plan.steps_per_epoch`` (0 when the records are not counted) and ``plan.steps(epochs)``.
  The rate must be a function of the step alone, so that a resumed run continues it exactly.

Optional functions:

* ``metrics_fn(params) -> {name: keras.metrics.Metric}``, each updated with
  ``(labels, outputs)`` (``library.engine.metrics.Selected`` picks one part of each);
  their names are what ``METRICS`` declares and ``best_metric`` may name.
* ``predictions_fn(outputs, params) -> {name: tensor}`` (default ``{"outputs": outputs}``):
  what export, predict and the figures give.
* ``serving_inputs(params) -> {name: tf.TensorSpec}`` (batch dimension first) and
  ``serving_fn(inputs, params) -> features``: the exported model's signature and how it
  turns a batch of those inputs into features. ``--mode predict`` reads its files into
  these inputs too.
* ``predict_reader(path, inputs, params)`` -> the examples of one file as ``(row name,
  {input: value} or a reason)``, or None for a file it does not read, which the library's
  readers then read (CSV, JSON lines, TFRecords: ``library.data.readers``).
* ``callbacks_fn(params) -> [Recorder | Action]``: the project's recorders (each training
  log, each evaluation, in training and in continuous evaluation) and actions (every N
  steps); see ``library.recorders``.
* ``prepare_fn(params) -> params``: what the data decides (the classes of a labels file, a
  vocabulary adapted on the training texts), filled in once before anything is built; called
  after TensorFlow loads. What it changes is saved in every checkpoint: evaluate, predict,
  export and the best checkpoint reuse it and need no training data; a resume whose data
  decides otherwise is refused.
* ``diagnose_fn(file_pattern, params, error) -> str | None``: one line naming the record
  behind a data error (``error``, TensorFlow's) that the library's own check (corrupt
  shards) does not find.
* ``sample_fn(folder, params) -> {key: value}``: writes a few examples of the project's data
  under ``folder`` (training, evaluation and predict files) and returns the configuration
  keys that point a run at them and keep it small; the project's tests (``tests/project``)
  train, evaluate, export and predict on them.

``params`` is the resolved, frozen configuration (``library.config.Params``: a mapping with
attribute access). Its keys are the library's run options and what the project declares.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from library.base.errors import ProjectError


class ModeKeys:
    """What a function is being called for, as in tf.estimator."""

    TRAIN = "train"
    EVAL = "eval"


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
    sample_fn: Callable | None = None

    @classmethod
    def from_mapping(cls, functions: Mapping[str, Callable] | Functions) -> Functions:
        """From ``{"model_fn": ..., ...}`` (or a ``Functions``); unknown names are errors."""
        if isinstance(functions, Functions):
            return functions
        unknown = set(functions) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"not a contract function: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in functions.items() if v is not None})

    def replace(self, **functions: Callable) -> Functions:
        """A copy with some functions replaced (by contract name)."""
        return Functions.from_mapping({**self.as_mapping(), **functions})

    def as_mapping(self) -> dict[str, Callable]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def project_functions(project: ModuleType) -> Functions:
    """The functions a project package declares (its ``load_functions()``), checked."""
    declare = getattr(project, "load_functions", None)
    if not callable(declare):
        raise ProjectError(
            f"{project.__name__}: declares no load_functions(): its __init__.py returns the "
            "project's functions by contract name there (library/contract.py)"
        )
    try:
        return Functions.from_mapping(declare())
    except TypeError as error:
        raise ProjectError(f"{project.__name__}.load_functions(): {error}") from None


def call_input_fn(input_fn: Callable, input_context=None):
    """Calls an Estimator input function (of an optional ``tf.distribute.InputContext``)
    with the input context when it takes one; its dataset."""
    if inspect.signature(input_fn).parameters:
        return input_fn(input_context)
    return input_fn()


def model_inputs(model, features):
    """The features the model takes: a dict-input model ignores extras such as a file name."""
    names = model_feature_names(model)
    if names is not None and isinstance(features, Mapping):
        return {name: features[name] for name in names}
    return features


def model_feature_names(model) -> list[str] | None:
    """The names of the features a dict-input model takes; None for any other model (it
    takes the features as they come)."""
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a subclassed model has no symbolic input
        return None
    return list(inputs) if isinstance(inputs, Mapping) else None
