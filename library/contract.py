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
  ``(features, labels)`` batches, or ``(features, labels, sample_weight)``: the weights then
  weigh the loss (training and evaluation) and every metric. ``mode`` is a ``ModeKeys``
  value. ``input_context`` is a ``tf.distribute.InputContext`` (None on one device): batch
  by ``library.replica_batch_size`` and read TFRecords through ``library.read_records`` so
  that each replica gets its share. It may read
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
  A project with its own update (``train_step_fn``) may leave it out.

Optional functions:

* ``train_step_fn(params) -> library.TrainingStep | None``: the project's own update, for
  what is not one loss and one optimizer (a GAN's two networks, a distillation's frozen
  teacher, custom gradients): the step builds what it needs besides ``model_fn``'s model,
  creates its optimizers and computes one loss per optimizer (``library/engine/update.py``
  says how). The library keeps the rest: the strategy, checkpoints of every model and
  optimizer the step holds, exact resume, the NaN guard, loss scaling, gradient
  accumulation, the moving average, logging of what the step returns, evaluation, the best
  checkpoint and the export of ``model_fn``'s model. None: the default update
  (``loss_fn`` and ``optimizer_fn``).
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from library.base.errors import ProjectError

if TYPE_CHECKING:  # for the type checker alone: importing the contract loads no TensorFlow
    import keras
    import tensorflow as tf

    from library.config import Field, Params
    from library.engine.schedule import Plan
    from library.engine.update import TrainingStep
    from library.recorders.base import Action, Recorder


class ModeKeys:
    """What a function is being called for, as in tf.estimator."""

    TRAIN = "train"
    EVAL = "eval"


# The functions' types. Their arguments are positional (the library passes them so): a
# function matches whatever it names them.


class InputFn(Protocol):
    """``input_fn(file_pattern, mode, params, input_context=None) -> tf.data.Dataset``."""

    def __call__(
        self,
        file_pattern: str,
        mode: str,
        params: Params,
        input_context: tf.distribute.InputContext | None = None,
        /,
    ) -> tf.data.Dataset: ...


class ModelFn(Protocol):
    """``model_fn(params) -> keras.Model``: a new, built model each call."""

    def __call__(self, params: Params, /) -> keras.Model: ...


class LossFn(Protocol):
    """``loss_fn(labels, outputs, params)`` -> a per-example loss or ``{term: loss}``."""

    def __call__(
        self, labels: Any, outputs: Any, params: Params, /
    ) -> tf.Tensor | Mapping[str, tf.Tensor]: ...


class OptimizerFn(Protocol):
    """``optimizer_fn(params, plan) -> keras.optimizers.Optimizer``."""

    def __call__(self, params: Params, plan: Plan, /) -> keras.optimizers.Optimizer: ...


class TrainStepFn(Protocol):
    """``train_step_fn(params) -> TrainingStep | None`` (None: the default update)."""

    def __call__(self, params: Params, /) -> TrainingStep | None: ...


class MetricsFn(Protocol):
    """``metrics_fn(params) -> {name: keras.metrics.Metric}``."""

    def __call__(self, params: Params, /) -> Mapping[str, keras.metrics.Metric]: ...


class PredictionsFn(Protocol):
    """``predictions_fn(outputs, params) -> {name: tensor}``."""

    def __call__(self, outputs: Any, params: Params, /) -> Mapping[str, tf.Tensor]: ...


class ServingInputs(Protocol):
    """``serving_inputs(params) -> {name: tf.TensorSpec}`` (batch dimension first)."""

    def __call__(self, params: Params, /) -> Mapping[str, tf.TensorSpec]: ...


class ServingFn(Protocol):
    """``serving_fn(inputs, params) -> features``, from a batch of the serving inputs."""

    def __call__(self, inputs: Mapping[str, tf.Tensor], params: Params, /) -> Any: ...


class PredictReader(Protocol):
    """``predict_reader(path, inputs, params)`` -> the examples of one file as ``(row name,
    {input: value} or a reason)``, or None for a file it does not read."""

    def __call__(
        self, path: str, inputs: Mapping[str, tf.TensorSpec], params: Params, /
    ) -> Iterable[tuple[str, Mapping[str, Any] | str]] | None: ...


class CallbacksFn(Protocol):
    """``callbacks_fn(params) -> [Recorder | Action]``."""

    def __call__(self, params: Params, /) -> Sequence[Recorder | Action]: ...


class PrepareFn(Protocol):
    """``prepare_fn(params) -> params``, with what the data decides filled in."""

    def __call__(self, params: Params, /) -> Params: ...


class DiagnoseFn(Protocol):
    """``diagnose_fn(file_pattern, params, error) -> str | None``: the record to blame."""

    def __call__(
        self, file_pattern: str, params: Params, error: tf.errors.OpError, /
    ) -> str | None: ...


class SampleFn(Protocol):
    """``sample_fn(folder, params) -> {key: value}``: a few examples written under
    ``folder``, and the keys that point a run at them."""

    def __call__(self, folder: str, params: Params, /) -> Mapping[str, Any]: ...


def _no_metrics(params: Params, /) -> dict[str, keras.metrics.Metric]:
    return {}


def _outputs(outputs: Any, params: Params, /) -> dict[str, tf.Tensor]:
    return {"outputs": outputs}


def _no_callbacks(params: Params, /) -> list[Recorder | Action]:
    return []


@dataclass(frozen=True)
class Functions:
    """The project's functions, by contract name (optional ones have defaults)."""

    model_fn: ModelFn
    loss_fn: LossFn
    optimizer_fn: OptimizerFn | None = None
    input_fn: InputFn | None = None
    metrics_fn: MetricsFn = _no_metrics
    predictions_fn: PredictionsFn = _outputs
    serving_inputs: ServingInputs | None = None
    serving_fn: ServingFn | None = None
    predict_reader: PredictReader | None = None
    callbacks_fn: CallbacksFn = _no_callbacks
    prepare_fn: PrepareFn | None = None
    diagnose_fn: DiagnoseFn | None = None
    sample_fn: SampleFn | None = None
    train_step_fn: TrainStepFn | None = None

    @classmethod
    def from_mapping(
        cls, functions: Mapping[str, Callable[..., Any] | None] | Functions
    ) -> Functions:
        """From ``{"model_fn": ..., ...}`` (or a ``Functions``); unknown names are errors, a
        None is a function not declared."""
        if isinstance(functions, Functions):
            return functions
        unknown = set(functions) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"not a contract function: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in functions.items() if v is not None})

    def replace(self, **functions: Callable[..., Any] | None) -> Functions:
        """A copy with some functions replaced (by contract name)."""
        return Functions.from_mapping({**self.as_mapping(), **functions})

    def as_mapping(self) -> dict[str, Callable[..., Any] | None]:
        """``{contract name: function}``, None for an optional one not declared."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Project(Protocol):
    """A project package as ``library.cli.main`` takes it: what its ``__init__.py`` must
    declare. What it may declare besides (``METRICS``, ``RUN_OPTIONS``, ``check``,
    ``onednn_off``) the library reads when it is there."""

    __name__: str

    @property
    def HYPERPARAMETERS(self) -> Sequence[Field]:  # noqa: N802 - the package's constant
        """The keys of hyperparameters.yaml."""
        ...

    def load_functions(self) -> Functions | Mapping[str, Callable[..., Any] | None]:
        """The project's functions by contract name, imported inside it."""
        ...


def project_functions(project: Project) -> Functions:
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


def call_input_fn(
    input_fn: Callable[..., tf.data.Dataset],
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Calls an Estimator input function (of an optional ``tf.distribute.InputContext``)
    with the input context when it takes one; its dataset."""
    if inspect.signature(input_fn).parameters:
        return input_fn(input_context)
    return input_fn()


def model_inputs(model: keras.Model, features: Any) -> Any:
    """The features the model takes: a dict-input model ignores extras such as a file name."""
    names = model_feature_names(model)
    if names is not None and isinstance(features, Mapping):
        return {name: features[name] for name in names}
    return features


def model_feature_names(model: keras.Model) -> list[str] | None:
    """The names of the features a dict-input model takes; None for any other model (it
    takes the features as they come)."""
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a subclassed model has no symbolic input
        return None
    return list(inputs) if isinstance(inputs, Mapping) else None
