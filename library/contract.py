"""THE CONTRACT between ``project/`` and the library (the only place it is written down).

A project provides pure functions; ``run.py`` hands them to the library by these names:

* ``input_fn(file_pattern, mode, params, input_context=None) -> tf.data.Dataset`` of
  ``(features, labels)`` batches; ``features`` is a dict with at least ``image``. ``mode`` is
  a ``library.modes.ModeKeys`` value. ``input_context`` is a ``tf.distribute.InputContext``
  (None on one device): batch by ``library.inputs.replica_batch_size`` and read files through
  ``library.inputs.read_records`` so that each replica gets its share. The Estimator itself
  takes input functions of one optional argument, the input context (or of none).
* ``model_fn(params) -> keras.Model``: a new, built model each call. It is called with
  ``training=True`` in training and ``False`` in evaluation and prediction, so train and eval
  share weights but differ in dropout and batch norm. It is called inside the distribution
  strategy's scope.
* ``loss_fn(labels, outputs, params) -> per-example loss``. The library averages it over the
  global batch, splits it among replicas and adds the model's regularisation losses.
* ``optimizer_fn(params, plan) -> keras.optimizers.Optimizer`` with its learning-rate
  schedule; ``plan`` (``library.schedule.Plan``) gives the run's lengths in steps:
  ``plan.schedule_steps`` (the schedule's length, kept across resumes), ``plan.steps_per_epoch``
  and ``plan.steps(epochs)``. The rate must be a function of the step alone, so that a resumed
  run continues it exactly.
* optional ``metrics_fn(params) -> {name: keras.metrics.Metric}``, updated with
  ``(labels, outputs)``; ``predictions_fn(outputs) -> {name: tensor}``; and
  ``serving_fn(encoded_images, params) -> features`` for the exported model's signature.

``params`` is the resolved, frozen configuration (``library.config.Params``: a mapping with
attribute access). Its keys are the library's run options and the hyperparameters the project
declares in ``project/hyperparameters.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


def _no_metrics(params) -> dict:
    return {}


def _outputs(outputs) -> dict:
    return {"outputs": outputs}


@dataclass(frozen=True)
class Functions:
    """The project's functions, by contract name (optional ones have defaults)."""

    model_fn: Callable
    loss_fn: Callable
    optimizer_fn: Callable
    input_fn: Callable | None = None
    metrics_fn: Callable = _no_metrics
    predictions_fn: Callable = _outputs
    serving_fn: Callable | None = None

    @classmethod
    def from_mapping(cls, functions: Mapping[str, Callable]) -> Functions:
        """From ``{"model_fn": ..., ...}`` as ``run.py`` builds it; unknown names are errors."""
        unknown = set(functions) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"not a contract function: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in functions.items() if v is not None})
