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
from library.contract import model_inputs

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


def loss_terms(
    loss_fn: Callable, model: keras.Model, params: Mapping, element_spec
) -> tuple[str, ...]:
    """The names of the terms ``loss_fn`` returns (sorted), or ``()`` for one loss: found by
    tracing it on the symbolic outputs of ``model`` and the labels of ``element_spec`` (a
    dataset's ``(features, labels)`` spec); nothing runs."""
    features_spec, labels_spec = element_spec

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


def total_loss(loss) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """``(per-example total, [per-example term, ...] in the order of their names)``."""
    if not isinstance(loss, Mapping):
        return tf.cast(loss, tf.float32), []
    terms = [tf.cast(loss[name], tf.float32) for name in sorted(loss)]
    return tf.add_n(terms), terms


def mean_loss(per_example: tf.Tensor, model: keras.Model) -> tf.Tensor:
    """Mean of the per-example loss over the global batch, plus the model's regularisation.

    On several replicas each divides by the global batch and the optimizer sums their
    gradients; the regularisation is split among them the same way.
    """
    loss = tf.nn.compute_average_loss(tf.cast(per_example, tf.float32))
    if model.losses:
        loss += tf.nn.scale_regularization_loss(
            tf.add_n([tf.cast(x, tf.float32) for x in model.losses])
        )
    return loss


def build_train_step(
    model: keras.Model,
    loss_fn: Callable,
    optimizer: keras.optimizers.Optimizer,
    params: Mapping,
    state: StepState,
    variables: Sequence[tf.Variable] | None = None,
    update_scales: Sequence[float] | None = None,
    scale_updates: bool = False,
):
    """One update on one replica; a non-finite loss or gradient on any replica leaves weights,
    optimizer and batch-norm statistics untouched on all of them.

    Args:
        variables: what trains (default: all trainable variables of the model); a frozen
            variable is left out, so no gradient is computed for it.
        update_scales: one factor per variable on its update (not its gradient: Adam is
            invariant to the scale of a gradient), e.g. per-layer learning-rate multipliers.
        scale_updates: also scale every update by ``state.lr_multiplier`` (which an action
            may lower during training). Scaling costs a copy of the variables per step, so
            it is built in only when a factor can differ from 1.
    """
    variables = list(model.trainable_variables if variables is None else variables)
    scales = [1.0] * len(variables) if update_scales is None else list(update_scales)
    # mixed_float16: gradients of a scaled loss; the optimizer unscales them, and skips the
    # update and lowers the scale when they overflow (not a divergence: the loss is finite).
    loss_scale = optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else None
    scaled = scale_updates or any(s != 1.0 for s in scales)

    def apply(grads):
        before = [tf.identity(v) for v in variables] if scaled else None
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        if before is not None:
            for variable, old, scale in zip(variables, before, scales, strict=True):
                variable.assign(old + (variable - old) * (scale * state.lr_multiplier))

    def train_step(features, labels):
        # Batch norm updates its moving statistics in the forward pass: keep them to undo.
        statistics = [tf.identity(v) for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            outputs = model(model_inputs(model, features), training=True)
            per_example, terms = total_loss(loss_fn(labels, outputs, params))
            loss = mean_loss(per_example, model)
            target = loss_scale.scale_loss(loss) if loss_scale else loss
        grads = tape.gradient(target, variables)
        grad_norm = tf.linalg.global_norm([g for g in grads if g is not None])
        if loss_scale:
            grad_norm /= loss_scale.dynamic_scale
            finite = all_replicas(tf.math.is_finite(loss))
        else:
            finite = all_replicas(tf.math.is_finite(loss) & tf.math.is_finite(grad_norm))
        rate = tf.cast(optimizer.learning_rate, tf.float32)
        state.learning_rate.assign(rate * state.lr_multiplier if scale_updates else rate)
        apply_or_revert(
            finite,
            apply,
            grads,
            lambda saved: restore(model.non_trainable_variables, saved),
            statistics,
        )
        record_step(state, finite, grad_norm, per_example, terms)

    return train_step


def gradient_pass(model: keras.Model, loss_fn: Callable, params: Mapping) -> Callable:
    """``gradients(features, labels)``: the step's forward and backward pass, updating no
    weight (the global norm of the gradients); batch norm's moving statistics do move (the
    caller puts them back). What the input check times the step by."""

    @tf.function(jit_compile=bool(params.get("xla")))
    def gradients(features, labels):
        with tf.GradientTape() as tape:
            outputs = model(model_inputs(model, features), training=True)
            per_example, _ = total_loss(loss_fn(labels, outputs, params))
            loss = mean_loss(per_example, model)
        grads = tape.gradient(loss, model.trainable_variables)
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


def record_step(state: StepState, finite, grad_norm, per_example, terms=()) -> None:
    """Counts the step, its NaN streak, its loss and loss terms (weight 0 for a skipped
    step)."""
    state.step.assign_add(1)
    state.nonfinite_in_a_row.assign(
        tf.where(finite, tf.constant(0, tf.int64), state.nonfinite_in_a_row + 1)
    )
    state.nonfinite_total.assign_add(tf.cast(~finite, tf.int64))
    state.grad_norm.assign(tf.where(finite, grad_norm, state.grad_norm))
    # NaN * 0 is still NaN: zero the loss of a skipped step before weighting it out.
    batch_loss = tf.where(finite, tf.reduce_mean(tf.cast(per_example, tf.float32)), 0.0)
    weight = tf.cast(finite, tf.float32)
    state.log_loss.update_state(batch_loss, sample_weight=weight)
    state.checkpoint_loss_total.assign_add(batch_loss * weight)
    state.checkpoint_loss_count.assign_add(weight)
    if terms:
        means = tf.stack([tf.reduce_mean(term) for term in terms])
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
):
    """Runs ``steps`` train steps inside one graph call (``steps_per_execution``).

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
                    element = next(iterator)
                with tf.control_dependencies(tf.nest.flatten(element, expand_composites=True)):
                    state.input_wait.assign_add(tf.timestamp() - started)
            else:
                element = next(iterator)
            features, labels = element
            strategy.run(step, args=(features, labels))
        return state.nonfinite_in_a_row.read_value()

    return train_loop


def check_compilable(element_spec, features: Sequence[str] | None) -> None:
    """Refuses XLA for a step that would take strings (XLA takes none, and TF 2.21 aborts
    the process on one instead of raising): before anything is traced.

    Args:
        element_spec: the ``(features, labels)`` spec of the training batches.
        features: the features the model takes (None: all of them).
    """
    features_spec, labels_spec = element_spec
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

    def replica_step(features, labels, observe):
        inputs = model_inputs(model, features)
        activations = {}
        if observe and observer is not None:
            outputs, activations = observer(inputs, training=False)
        else:
            outputs = model(inputs, training=False)
        loss = loss_fn(labels, outputs, params)
        total, _ = total_loss(loss)
        loss_metrics["loss"].update_state(total)
        for name, term in loss.items() if isinstance(loss, Mapping) else ():
            loss_metrics[f"loss/{name}"].update_state(tf.cast(term, tf.float32))
        for metric in metrics.values():
            metric.update_state(labels, outputs)
        return (outputs, activations) if observe else None

    @tf.function(reduce_retracing=True)
    def eval_step(features, labels, observe=False):
        return strategy.run(replica_step, args=(features, labels, observe))

    return eval_step
