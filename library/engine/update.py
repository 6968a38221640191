"""What one training update computes: the door a project's own update comes through
(``TrainingStep``, from the contract's ``train_step_fn``), and the update every other project
gets through the same door (``DefaultStep``: one model, one summed loss, one optimizer).

A step computes losses; the library does the rest (``library/engine/steps.py``): the gradient
of each loss with respect to the variables of its optimizer, mixed-precision loss scaling,
the NaN guard (a loss or gradient that is not finite on any replica changes no weight, no
optimizer slot, no batch-norm statistic), the learning-rate multiplier of a plateau,
gradient accumulation, the moving average of the weights, logging of every value the step
returns, and checkpoints of every model and optimizer the step holds (exact resume).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from library.config import Params
from library.contract import model_inputs
from library.engine.schedule import Plan


class TrainingStep(tf.Module):
    """A project's own update: several models or optimizers, several losses, a teacher,
    custom gradients (a GAN, a distillation). A project's ``train_step_fn(params)`` returns
    one (a subclass whose ``__init__`` calls ``super().__init__()``); the library then:

    * calls ``build(model, params)`` once, inside the distribution strategy's scope, with
      the model of ``model_fn`` (the one evaluated, kept as the best and exported); ``build``
      makes what else the step needs (a discriminator, a teacher restored from its
      checkpoint) and keeps them as attributes;
    * calls ``create_optimizers(params, plan)``, ``{name: keras optimizer}`` (``plan``: the
      run's lengths in steps, for a schedule), once the run knows its plan;
    * on each replica and batch calls ``compute(features, labels, sample_weight)``, which
      returns ``(losses, logged)``: ``losses`` has one scalar per optimizer (its loss,
      averaged over the global batch: ``tf.nn.compute_average_loss``), ``logged`` the
      scalars to log (``loss/<name>``; a ``loss`` entry is the line's loss, else their sum);
    * differentiates each loss with respect to ``variables()[name]`` and applies the
      gradients with that optimizer: all of them or, when any loss or gradient is not
      finite, none.

    Everything the step holds as attributes (models, and the optimizers the library keeps in
    ``self.optimizers``) is saved in every checkpoint and restored with it: a resumed run
    continues exactly.
    """

    optimizers: dict[str, keras.optimizers.Optimizer]

    def build(self, model: keras.Model, params: Params) -> None:
        """Makes what the step needs besides ``model`` (kept as attributes)."""
        raise NotImplementedError

    def create_optimizers(self, params: Params, plan: Plan) -> dict[str, Any]:
        """``{name: keras optimizer}``, one per loss ``compute`` returns."""
        raise NotImplementedError

    def variables(self) -> Mapping[str, Sequence[tf.Variable]]:
        """The variables each optimizer updates, by the optimizer's name."""
        raise NotImplementedError

    def compute(
        self, features: Any, labels: Any, sample_weight: tf.Tensor | None = None
    ) -> tuple[Mapping[str, tf.Tensor], Mapping[str, tf.Tensor]]:
        """``(losses by optimizer, scalars to log)`` of one batch, on one replica."""
        raise NotImplementedError

    def models(self) -> list[keras.Model]:
        """Every Keras model the step holds, as attributes or in lists and dicts of them (the
        library saves their random state and, when a step is skipped, puts back the batch-norm
        statistics of those that train)."""
        found = self._flatten(predicate=lambda value: isinstance(value, keras.Model))
        return list({id(model): model for model in found}.values())

    def logged_names(self, element_spec: Any) -> tuple[str, ...]:
        """The names ``compute`` logs besides ``loss`` (sorted), found by tracing it on
        ``element_spec`` (a batch's ``(features, labels[, sample_weight])``); nothing runs."""
        specs = tuple(element_spec) + (None,) * (3 - len(element_spec))
        traced = tf.function(lambda f, y, w: self.compute(f, y, w)[1])
        logged = traced.get_concrete_function(*specs).structured_outputs
        return tuple(sorted(name for name in logged if name != "loss"))


class DefaultStep(TrainingStep):
    """One model, one loss (the sum of the project's ``loss_fn`` terms, averaged over the
    global batch, plus the model's regularisation), one optimizer (``optimizer_fn``): the
    update of every project that has no ``train_step_fn``.

    Args:
        loss_fn, optimizer_fn: the project's.
    """

    def __init__(self, loss_fn: Callable[..., Any], optimizer_fn: Callable[..., Any]):
        super().__init__()
        self.loss_fn, self.optimizer_fn = loss_fn, optimizer_fn

    def build(self, model: keras.Model, params: Params) -> None:
        self.model, self.params = model, params

    def create_optimizers(self, params: Params, plan: Plan) -> dict[str, Any]:
        return {"model": self.optimizer_fn(params, plan)}

    def variables(self) -> Mapping[str, Sequence[tf.Variable]]:
        return {"model": self.model.trainable_variables}

    def compute(self, features, labels, sample_weight=None):
        outputs = self.model(model_inputs(self.model, features), training=True)
        per_example, terms = total_loss(self.loss_fn(labels, outputs, self.params))
        loss = mean_loss(per_example, self.model, sample_weight)
        logged = {"loss": weighted_mean(per_example, sample_weight)}
        logged.update({name: weighted_mean(term, sample_weight) for name, term in terms.items()})
        return {"model": loss}, logged

    def logged_names(self, element_spec: Any) -> tuple[str, ...]:
        """The names of the loss terms, traced on the model's symbolic outputs when it has
        them (cheaper than tracing the whole step)."""
        return loss_terms(self.loss_fn, self.model, self.params, element_spec)


def total_loss(loss) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """``(per-example total, {term: per-example term})`` of what ``loss_fn`` returned."""
    if not isinstance(loss, Mapping):
        return tf.cast(loss, tf.float32), {}
    terms = {name: tf.cast(loss[name], tf.float32) for name in sorted(loss)}
    return tf.add_n(list(terms.values())), terms


def mean_loss(
    per_example: tf.Tensor, model: keras.Model, sample_weight: tf.Tensor | None = None
) -> tf.Tensor:
    """Mean of the per-example loss over the global batch (weighted), plus the model's
    regularisation.

    On several replicas each divides by the global batch and the optimizer sums their
    gradients; the regularisation is split among them the same way.
    """
    loss = tf.nn.compute_average_loss(tf.cast(per_example, tf.float32), sample_weight)
    if model.losses:
        loss += tf.nn.scale_regularization_loss(
            tf.add_n([tf.cast(x, tf.float32) for x in model.losses])
        )
    return loss


def weighted_mean(values: tf.Tensor, sample_weight: tf.Tensor | None) -> tf.Tensor:
    """The mean of per-example ``values`` on this replica (weighted by ``sample_weight``)."""
    values = tf.cast(values, tf.float32)
    if sample_weight is None:
        return tf.reduce_mean(values)
    weight = tf.cast(sample_weight, tf.float32)
    if (
        weight.shape.rank
        and values.shape.rank is not None
        and weight.shape.rank > values.shape.rank
    ):
        weight = tf.squeeze(weight, -1)  # [batch, 1] weights of [batch] values
    weight = tf.broadcast_to(weight, tf.shape(values))
    return tf.math.divide_no_nan(tf.reduce_sum(values * weight), tf.reduce_sum(weight))


def loss_terms(
    loss_fn: Callable[..., Any], model: keras.Model, params: Mapping[str, Any], element_spec: Any
) -> tuple[str, ...]:
    """The names of the terms ``loss_fn`` returns (sorted), or ``()`` for one loss: found by
    tracing it on the symbolic outputs of ``model`` and the labels of ``element_spec`` (a
    dataset's ``(features, labels)`` spec); nothing runs."""
    features_spec, labels_spec = element_spec[:2]

    def spec(tensor):
        return tf.TensorSpec(tensor.shape, tensor.dtype)

    try:
        outputs_spec = tf.nest.map_structure(spec, model.output)
    except (AttributeError, ValueError):  # a subclassed model: trace it as well
        probe = tf.function(
            lambda f, y: loss_fn(y, model(model_inputs(model, f), training=False), params)
        )
        structure = probe.get_concrete_function(features_spec, labels_spec).structured_outputs
    else:
        probe = tf.function(lambda y, outputs: loss_fn(y, outputs, params))
        structure = probe.get_concrete_function(labels_spec, outputs_spec).structured_outputs
    return tuple(sorted(structure)) if isinstance(structure, Mapping) else ()
