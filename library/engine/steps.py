"""The train and eval steps: short functions run on every replica, apart from the outer loop.

Both run through ``strategy.run``: with the default strategy that is a plain call, with a
mirrored or multi-worker strategy each replica runs the step on its share of the global
batch and the optimizer sums the gradients across replicas.

A project's ``loss_fn`` returns one per-example loss or a dict of named per-example terms;
the step trains their sum and keeps each term's mean beside the total's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import keras
import tensorflow as tf

from library.base.errors import CompileError
from library.config import Params
from library.contract import model_inputs
from library.engine.update import DefaultStep, TrainingStep, total_loss

_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA  # counters: every replica counts the same
_SUM = tf.VariableAggregation.SUM  # sums each replica adds to


class StepState(tf.Module):
    """What the step updates besides the weights; saved in every checkpoint.

    The loop reads it only when it logs or saves, so one value crosses to the host per call.
    A checkpoint thereby records the step, the learning rate in force and the mean training
    loss (and loss terms) since the previous checkpoint: an evaluator in another process
    reads them from it.

    Args:
        terms: the names of the loss terms (``loss_terms``); none for a single loss.
    """

    def __init__(self, terms: Sequence[str] = ()):
        super().__init__()
        self.terms = tuple(terms)
        self.step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="global_step", aggregation=_FIRST
        )
        self.nonfinite_in_a_row = tf.Variable(
            0, dtype=tf.int64, trainable=False, aggregation=_FIRST
        )
        self.nonfinite_total = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=_FIRST)
        self.grad_norm = tf.Variable(0.0, dtype=tf.float32, trainable=False, aggregation=_FIRST)
        self.learning_rate = tf.Variable(0.0, dtype=tf.float32, trainable=False, aggregation=_FIRST)
        # The learning-rate schedule's length, fixed by the run that started model_dir.
        self.schedule_steps = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=_FIRST)
        # Seconds the train loop waited for input since the last log line.
        self.input_wait = tf.Variable(0.0, dtype=tf.float64, trainable=False, aggregation=_FIRST)
        # A factor on every update, on top of the schedule (lowered on a plateau).
        self.lr_multiplier = tf.Variable(1.0, dtype=tf.float32, trainable=False, aggregation=_FIRST)
        self.log_loss = keras.metrics.Mean(name="log_loss")  # since the last log line
        # The training loss since the last checkpoint, as a sum and a count of (finite) steps:
        # plain variables, so that each checkpoint holds the loss of the steps before it.
        summed = {"synchronization": tf.VariableSynchronization.ON_READ, "aggregation": _SUM}
        self.checkpoint_loss_total = tf.Variable(0.0, trainable=False, **summed)
        self.checkpoint_loss_count = tf.Variable(0.0, trainable=False, **summed)
        if self.terms:  # only then: checkpoints of a single loss keep the layout they had
            zeros = tf.zeros([len(self.terms)])
            self.log_terms_total = tf.Variable(zeros, trainable=False, **summed)
            self.log_terms_count = tf.Variable(0.0, trainable=False, **summed)
            self.checkpoint_terms_total = tf.Variable(zeros, trainable=False, **summed)

    def checkpoint_loss(self) -> float | None:
        """The mean training loss since the last checkpoint (None if no step counted)."""
        count = float(self.checkpoint_loss_count.numpy())
        return float(self.checkpoint_loss_total.numpy()) / count if count else None

    def checkpoint_terms(self) -> dict[str, float]:
        """Each loss term's mean since the last checkpoint (empty if no step counted)."""
        count = float(self.checkpoint_loss_count.numpy())
        if not self.terms or not count:
            return {}
        totals = self.checkpoint_terms_total.numpy()
        return {name: float(total) / count for name, total in zip(self.terms, totals, strict=True)}

    def log_terms(self) -> dict[str, float]:
        """Each loss term's mean since the last log line; resets them."""
        if not self.terms:
            return {}
        count = float(self.log_terms_count.numpy())
        totals = self.log_terms_total.numpy()
        self.log_terms_total.assign(tf.zeros_like(self.log_terms_total))
        self.log_terms_count.assign(0.0)
        return {
            name: float(t) / count if count else float("nan")
            for name, t in zip(self.terms, totals, strict=True)
        }

    def recorded(self) -> tuple[float | None, dict[str, float], float]:
        """``(train loss, loss terms, learning rate)`` as a checkpoint of this state holds
        them: the means since the previous checkpoint (None and {} if no step counted) and
        the rate of the last step."""
        return self.checkpoint_loss(), self.checkpoint_terms(), float(self.learning_rate.numpy())

    def reset_checkpoint_loss(self) -> None:
        self.checkpoint_loss_total.assign(0.0)
        self.checkpoint_loss_count.assign(0.0)
        if self.terms:
            self.checkpoint_terms_total.assign(tf.zeros_like(self.checkpoint_terms_total))


def build_train_step(
    step: TrainingStep,
    updaters: Mapping[str, keras.optimizers.Optimizer],
    variables: Mapping[str, Sequence[tf.Variable]],
    state: StepState,
    scales: Mapping[str, Sequence[float]] | None = None,
    scale_updates: bool = False,
    averaged: tuple[keras.Model, keras.Model, float] | None = None,
) -> Callable[..., None]:
    """One update on one replica, of one batch or of several accumulated: each loss the
    step computes is differentiated with respect to its optimizer's variables; a non-finite
    loss or gradient on any replica leaves every weight, optimizer and batch-norm statistic
    untouched on all of them.

    ``train_step(element, ...)`` takes one ``(features, labels[, sample_weight])`` element
    per accumulated batch: the update applies the mean of their gradients (one batch of all
    their examples, for equal batches).

    Args:
        step: what computes the losses (``library/engine/update.py``).
        updaters: each loss's optimizer, by name (a ``LossScaleOptimizer`` under
            mixed_float16: gradients of the scaled loss, unscaled by it, an update skipped
            and the scale lowered when they overflow, which is no divergence).
        variables: what each optimizer trains (a frozen variable left out: no gradient).
        scales: per optimizer, one factor per variable on its update (not its gradient: Adam
            is invariant to the scale of a gradient), e.g. per-layer learning-rate
            multipliers.
        scale_updates: also scale every update by ``state.lr_multiplier`` (which an action
            may lower during training). Scaling costs a copy of the variables per step, so
            it is built in only when a factor can differ from 1.
        averaged: ``(average, model, decay)``: after each applied update, the average's
            trainable weights move toward the model's (``decay``), its other weights (batch
            norm's statistics) are the model's.
    """
    names = list(updaters)
    scales = {n: list((scales or {}).get(n, [1.0] * len(variables[n]))) for n in names}
    scaled = {n: scale_updates or any(s != 1.0 for s in scales[n]) for n in names}
    loss_scales = {
        n: u for n, u in updaters.items() if isinstance(u, keras.optimizers.LossScaleOptimizer)
    }
    # What a skipped step puts back: the non-trainable variables (batch norm's statistics,
    # dropout's random state) of the models that train (a frozen teacher's never change).
    models = [m for m in step.models() if m.trainable]
    first = updaters[names[0]]

    def gradients(element):
        features, labels, weight = unpack(element)
        with tf.GradientTape(persistent=len(names) > 1) as tape:
            losses, logged = step.compute(features, labels, weight)
            targets = {
                n: loss_scales[n].scale_loss(losses[n]) if n in loss_scales else losses[n]
                for n in names
            }
        grads = {n: tape.gradient(targets[n], variables[n]) for n in names}
        return losses, dict(logged), grads

    def apply(grads):
        for name in names:
            before = [tf.identity(v) for v in variables[name]] if scaled[name] else None
            updaters[name].apply_gradients(zip(grads[name], variables[name], strict=True))
            if before is not None:
                pairs = zip(variables[name], before, scales[name], strict=True)
                for variable, old, scale in pairs:
                    variable.assign(old + (variable - old) * (scale * state.lr_multiplier))
        if averaged is not None:
            average(*averaged)

    def train_step(*elements):
        # Batch norm updates its moving statistics in the forward pass: keep them to undo.
        statistics = [tf.identity(v) for m in models for v in m.non_trainable_variables]
        losses, logged, grads = accumulated(gradients, elements)
        finite, grad_norm = finite_and_norm(losses, grads, loss_scales)
        finite = all_replicas(finite)
        rate = tf.cast(first.learning_rate, tf.float32)
        state.learning_rate.assign(rate * state.lr_multiplier if scale_updates else rate)
        statistic_variables = [v for m in models for v in m.non_trainable_variables]
        apply_or_revert(
            finite, apply, grads, lambda saved: restore(statistic_variables, saved), statistics
        )
        record_step(state, finite, grad_norm, logged)

    return train_step


def finite_and_norm(
    losses: Mapping[str, tf.Tensor], grads: Mapping[str, list], loss_scales: Mapping
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(whether every loss and gradient is finite on this replica, the global norm of the
    gradients)``; a loss-scaled optimizer's gradients are unscaled, and their overflow is its
    own to handle (it skips its update and lowers its scale: no divergence)."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(x)) for x in losses.values()])
    norms = []
    for name, gradients in grads.items():
        norm = tf.linalg.global_norm([g for g in gradients if g is not None])
        if name in loss_scales:
            norms.append(norm / loss_scales[name].dynamic_scale)
        else:
            norms.append(norm)
            finite &= tf.math.is_finite(norm)
    return finite, norms[0] if len(norms) == 1 else tf.linalg.global_norm(norms)


def average(averaged: keras.Model, model: keras.Model, decay: float) -> None:
    """One step of the moving average of ``model``'s weights in ``averaged``."""
    for target, value in zip(averaged.weights, model.weights, strict=True):
        if target.trainable:
            target.assign(decay * target + (1.0 - decay) * tf.cast(value, target.dtype))
        else:
            target.assign(value)


def accumulated(gradients: Callable, elements: Sequence) -> tuple:
    """``(losses, logged, gradients)`` of one element, or their means over several."""
    losses, logged, grads = gradients(elements[0])
    if len(elements) == 1:
        return losses, logged, grads
    for element in elements[1:]:
        more_losses, more_logged, more_grads = gradients(element)
        losses = {n: losses[n] + more_losses[n] for n in losses}
        logged = {n: logged[n] + more_logged[n] for n in logged}
        grads = {
            n: [None if a is None else a + b for a, b in zip(grads[n], more_grads[n], strict=True)]
            for n in grads
        }
    count = float(len(elements))
    return (
        {n: v / count for n, v in losses.items()},
        {n: v / count for n, v in logged.items()},
        {n: [None if g is None else g / count for g in grads[n]] for n in grads},
    )


def unpack(element) -> tuple:
    """``(features, labels, sample_weight or None)`` of a dataset's element."""
    features, labels, *rest = element
    return features, labels, rest[0] if rest else None


def gradient_pass(step: TrainingStep, params: Mapping) -> Callable:
    """``gradients(features, labels[, sample_weight])``: the step's forward and backward
    pass, updating no weight (the global norm of the gradients); batch norm's moving
    statistics do move (the caller puts them back). What the input check times the step
    by."""
    variables = step.variables()

    @tf.function(jit_compile=bool(params.get("xla")))
    def gradients(*element):
        features, labels, weight = unpack(element)
        with tf.GradientTape(persistent=len(variables) > 1) as tape:
            losses, _ = step.compute(features, labels, weight)
        grads = [g for n in variables for g in tape.gradient(losses[n], variables[n])]
        return tf.linalg.global_norm([g for g in grads if g is not None])

    return gradients


def all_replicas(condition: tf.Tensor) -> tf.Tensor:
    """True where ``condition`` holds on every replica: all replicas must take one branch,
    or their weights diverge (mirrored) or their collectives hang (multi-worker)."""
    context = tf.distribute.get_replica_context()
    failures = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(~condition, tf.float32))
    return tf.equal(failures, 0.0)


def apply_or_revert(finite, apply_fn, apply_args, revert_fn, revert_args) -> None:
    """``apply_fn(apply_args)`` when ``finite`` (the same on every replica), else revert.

    apply_gradients all-reduces the gradients; a strategy that synchronises through
    ``merge_call`` cannot do that inside a ``tf.cond`` of a replica, so the decision is then
    taken in the cross-replica context (as Keras' LossScaleOptimizer does).
    """

    def apply(args):
        apply_fn(args)  # branches of a cond return the same structure: nothing

    def revert(args):
        revert_fn(args)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(finite, lambda: apply(apply_args), lambda: revert(revert_args))
        return

    def cross_replica(strategy, finite, apply_args, revert_args):
        decision = strategy.experimental_local_results(finite)[0]
        tf.cond(
            decision,
            lambda: strategy.extended.call_for_each_replica(apply, args=(apply_args,)),
            lambda: strategy.extended.call_for_each_replica(revert, args=(revert_args,)),
        )

    tf.distribute.get_replica_context().merge_call(
        cross_replica, args=(finite, apply_args, revert_args)
    )


def restore(variables: Sequence[tf.Variable], values: Sequence[tf.Tensor]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def record_step(state: StepState, finite, grad_norm, logged: Mapping[str, tf.Tensor]) -> None:
    """Counts the step, its NaN streak, its loss (``logged["loss"]``, else the sum of what
    it logs) and each logged term (weight 0 for a skipped step)."""
    state.step.assign_add(1)
    state.nonfinite_in_a_row.assign(
        tf.where(finite, tf.constant(0, tf.int64), state.nonfinite_in_a_row + 1)
    )
    state.nonfinite_total.assign_add(tf.cast(~finite, tf.int64))
    state.grad_norm.assign(tf.where(finite, grad_norm, state.grad_norm))
    if "loss" in logged:
        loss = logged["loss"]
    else:
        loss = tf.add_n(list(logged.values())) if logged else tf.constant(0.0)
    # NaN * 0 is still NaN: zero the loss of a skipped step before weighting it out.
    batch_loss = tf.where(finite, tf.cast(loss, tf.float32), 0.0)
    weight = tf.cast(finite, tf.float32)
    state.log_loss.update_state(batch_loss, sample_weight=weight)
    state.checkpoint_loss_total.assign_add(batch_loss * weight)
    state.checkpoint_loss_count.assign_add(weight)
    if state.terms:
        means = tf.stack([tf.cast(logged[name], tf.float32) for name in state.terms])
        means = tf.where(finite, means, tf.zeros_like(means)) * weight
        state.log_terms_total.assign_add(means)
        state.log_terms_count.assign_add(weight)
        state.checkpoint_terms_total.assign_add(means)


def build_train_loop(
    strategy: tf.distribute.Strategy,
    train_step: Callable,
    state: StepState,
    xla: bool = False,
    time_input: bool = True,
    accumulate: int = 1,
):
    """Runs ``steps`` train steps inside one graph call (``steps_per_execution``), each of
    ``accumulate`` batches (gradient accumulation).

    The time spent waiting for each batch is added to ``state.input_wait`` (what tells an
    input-bound run from a compute-bound one), unless ``time_input`` is False: TensorFlow's
    op determinism (the run option ``deterministic``) forbids reading the clock in a graph.
    Returns the count of non-finite steps in a row, the one value the loop must see each
    call.
    """
    step = tf.function(train_step, jit_compile=True) if xla else train_step

    @tf.function
    def train_loop(iterator, steps):
        for _ in tf.range(steps):
            if time_input:
                started = tf.timestamp()
                with tf.control_dependencies([started]):
                    elements = tuple(next(iterator) for _ in range(accumulate))
                arrived = tf.nest.flatten(elements, expand_composites=True)
                with tf.control_dependencies(arrived):
                    state.input_wait.assign_add(tf.timestamp() - started)
            else:
                elements = tuple(next(iterator) for _ in range(accumulate))
            strategy.run(step, args=elements)
        return state.nonfinite_in_a_row.read_value()

    return train_loop


def check_compilable(element_spec, features: Sequence[str] | None) -> None:
    """Refuses XLA for a step that would take strings (XLA takes none, and TF 2.21 aborts
    the process on one instead of raising): before anything is traced.

    Args:
        element_spec: the ``(features, labels)`` spec of the training batches.
        features: the features the model takes (None: all of them).
    """
    features_spec, labels_spec = element_spec[:2]
    if isinstance(features_spec, Mapping):
        taken = {k: v for k, v in features_spec.items() if features is None or k in features}
    else:
        taken = {"features": features_spec}
    strings = [
        name
        for name, spec in [*taken.items(), ("labels", labels_spec)]
        if any(s.dtype == tf.string for s in tf.nest.flatten(spec))
    ]
    if strings:
        raise CompileError(
            f"xla: the train step takes the string input {strings[0]!r}, and XLA compiles no "
            "strings; set xla: false, or turn the strings into numbers in the input_fn"
        )


def xla_problem(error: tf.errors.OpError) -> str | None:
    """One line for an error of XLA compiling the step (a string input, an op it has no
    kernel for), naming the op and the node (its layer's name leads); None for any other
    error."""
    message = error.message or ""
    if "trying to compile" not in message or "XLA" not in message:
        return None
    found = re.search(r"(\w+) \(No registered '\w+' OpKernel for XLA_\w+ devices", message)
    node = re.search(r"\{\{node ([^}]+)\}\}", message)
    op, where = (found.group(1) if found else "an op"), (node.group(1) if node else "the step")
    if op == "_Arg" and "DT_STRING" in message:
        reason = f"the step takes the string input {where!r}, and XLA takes no strings"
    else:
        reason = f"XLA has no kernel for {op} (at {where})"
    return (
        f"xla: the train step does not compile: {reason}; set xla: false, or do that work "
        "in the input_fn"
    )


def build_eval_step(
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    loss_fn: Callable,
    params: Mapping,
    loss_metrics: Mapping[str, keras.metrics.Metric],
    metrics: Mapping[str, keras.metrics.Metric],
    observer: keras.Model | None = None,
):
    """Accumulates the eval loss, its terms and the metrics of one (distributed) batch, in
    inference mode.

    ``loss_metrics`` are means: ``loss`` of the total, ``loss/<term>`` of each term.
    ``eval_step(features, labels, observe=True)`` also returns each replica's ``(outputs,
    activations)``: through ``observer`` (the same layers, giving the outputs and the
    encoder blocks' activations) when there is one, so that the recorders' histograms and
    figures cost no forward pass of their own.
    """

    def replica_step(features, labels, weight, observe):
        inputs = model_inputs(model, features)
        activations = {}
        if observe and observer is not None:
            outputs, activations = observer(inputs, training=False)
        else:
            outputs = model(inputs, training=False)
        loss = loss_fn(labels, outputs, params)
        total, terms = total_loss(loss)
        weighted = {} if weight is None else {"sample_weight": weight}
        loss_metrics["loss"].update_state(total, **weighted)
        for name, term in terms.items():
            loss_metrics[f"loss/{name}"].update_state(term, **weighted)
        for metric in metrics.values():
            metric.update_state(labels, outputs, **weighted)
        return (outputs, activations) if observe else None

    @tf.function(reduce_retracing=True)
    def eval_step(features, labels, weight=None, observe=False):
        return strategy.run(replica_step, args=(features, labels, weight, observe))

    return eval_step


def one_model_step(
    model: keras.Model,
    loss_fn: Callable,
    optimizer: keras.optimizers.Optimizer,
    params: Params,
    state: StepState,
    variables: Sequence[tf.Variable] | None = None,
    update_scales: Sequence[float] | None = None,
    scale_updates: bool = False,
) -> Callable[..., None]:
    """The default update of ``model`` by ``optimizer`` (already made), as ``train_step(
    (features, labels))``: for a test or a benchmark that drives the step itself."""
    step = DefaultStep(loss_fn, lambda params, plan: optimizer)
    step.build(model, params)
    step.optimizers = {"model": optimizer}
    trained = list(model.trainable_variables if variables is None else variables)
    scales = None if update_scales is None else {"model": list(update_scales)}
    return build_train_step(
        step, {"model": optimizer}, {"model": trained}, state, scales, scale_updates
    )
