"""Evaluation as a standalone object: of the live model during training, or of a checkpoint
(``--mode evaluate``, a separate evaluator process)."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from library import checkpoints, distribute, steps, summaries
from library.actions import Evaluation, checkpoint_values
from library.config import Params
from library.contract import Functions


class ConfusionMatrix(keras.metrics.Metric):
    """Counts of (true class, predicted class) pairs, summed over replicas."""

    def __init__(self, num_classes: int, name: str = "confusion_matrix"):
        super().__init__(name=name)
        self.num_classes = num_classes
        self.counts = self.add_variable(
            (num_classes, num_classes), initializer="zeros", dtype="int64", aggregation="sum"
        )

    def update_state(self, labels, predicted):
        self.counts.assign_add(
            tf.math.confusion_matrix(
                tf.reshape(labels, [-1]),
                tf.reshape(predicted, [-1]),
                num_classes=self.num_classes,
                dtype=tf.int64,
            )
        )

    def result(self):
        return tf.convert_to_tensor(self.counts)


class Evaluator:
    """The eval loss and the project's metrics over an input function.

    Its metrics and step are built once per model and reused: evaluating often (every
    checkpoint) retraces nothing. For a classifier (``predictions_fn`` gives ``class``,
    ``num_classes`` is known) it also keeps the last evaluation's confusion matrix. Of the
    first batch it saw it keeps the batch, the model's outputs and the encoder blocks'
    activations, computed in the evaluation pass itself (for the recorders' figures and
    histograms).
    """

    def __init__(self, functions: Functions, params: Params, strategy: tf.distribute.Strategy):
        self.functions, self.params, self.strategy = functions, params, strategy
        self._compiled: tuple | None = None  # (model, loss, metrics, confusion, eval step)
        self._restorable: keras.Model | None = None  # built once, for checkpoints
        self.confusion: np.ndarray | None = None  # of the last evaluation
        self.first_batch: tuple | None = None  # (features, labels) of the last evaluation
        self.first_outputs = None  # the model's outputs on it
        self.activations: dict[str, np.ndarray] = {}  # each encoder block's output on it

    def evaluate(
        self, model: keras.Model, input_fn: Callable, max_batches: int | None = None
    ) -> dict[str, float]:
        """``{"loss": ..., metric: ...}`` of ``model`` over ``input_fn``'s dataset.

        Args:
            model: the model (live or restored); built under this evaluator's strategy.
            input_fn: an input function of an optional input context.
            max_batches: stop after this many batches (None: the whole dataset).
        """
        _, loss, metrics, confusion, eval_step = self._compile(model)
        for metric in [loss, *metrics.values(), *([confusion] if confusion else [])]:
            metric.reset_state()
        dataset = distribute.distribute_dataset(self.strategy, input_fn)
        self.first_batch, self.first_outputs, self.activations = None, None, {}
        for batches, (features, labels) in enumerate(dataset):
            if max_batches and batches >= max_batches:
                break
            if batches == 0:
                self.first_batch = distribute.first_replica(self.strategy, (features, labels))
                observed = eval_step(features, labels, observe=True)
                outputs, activations = distribute.first_replica(self.strategy, observed)
                self.first_outputs = outputs
                self.activations = {
                    name: np.asarray(tf.cast(value, tf.float32))
                    for name, value in activations.items()
                }
            else:
                eval_step(features, labels)
        results = {"loss": float(loss.result())}
        results.update({name: float(m.result()) for name, m in metrics.items()})
        self.confusion = confusion.result().numpy() if confusion is not None else None
        return results

    def _compile(self, model: keras.Model) -> tuple:
        if self._compiled is None or self._compiled[0] is not model:
            classes = self.params.get("num_classes", 0)
            with self.strategy.scope():
                loss = keras.metrics.Mean(name="loss")
                metrics = dict(self.functions.metrics_fn(self.params))
                confusion = ConfusionMatrix(classes) if self._classifies(model, classes) else None
            eval_step = steps.build_eval_step(
                self.strategy,
                model,
                self.functions.loss_fn,
                self.params,
                loss,
                metrics,
                self.functions.predictions_fn,
                confusion,
                summaries.observer_model(model),
            )
            self._compiled = (model, loss, metrics, confusion, eval_step)
        return self._compiled

    def _classifies(self, model: keras.Model, classes: int) -> bool:
        """Whether predictions_fn gives a ``class`` for this model's output (on a symbolic
        output, so nothing runs)."""
        if classes < 2:
            return False
        try:
            spec = tf.TensorSpec((1, *model.output_shape[1:]), model.output.dtype)
            predicted = tf.function(self.functions.predictions_fn).get_concrete_function(spec)
            return "class" in predicted.structured_outputs
        except (TypeError, ValueError, AttributeError):
            return False

    def restore(self, prefix: str) -> tuple[keras.Model, steps.StepState]:
        """This evaluator's own model (built once) with the weights of checkpoint ``prefix``.

        Returns the model and the step state the checkpoint holds (zeros for a checkpoint
        without one, such as the best checkpoint).

        Raises:
            checkpoints.CheckpointError: the checkpoint does not hold this model's weights.
        """
        with self.strategy.scope():
            if self._restorable is None:
                self._restorable = self.functions.model_fn(self.params)
            state = steps.StepState()
        model = self._restorable
        try:
            checkpoints.restore_from(tf.train.Checkpoint(model=model), prefix)
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise checkpoints.CheckpointError(
                f"{prefix}: does not hold this model's weights ({reason}); "
                "was it trained with another encoder or image_size?"
            ) from None
        tf.train.Checkpoint(state=state).restore(prefix).expect_partial()
        return model, state


def evaluate_continuously(
    evaluator: Evaluator,
    model_dir: str,
    plan,
    input_fn: Callable,
    max_batches: int | None,
    recorders: list,
    timeout_secs: float,
    say: Callable[[str], None] = print,
    poll_secs: float = 1.0,
) -> int:
    """Evaluates every checkpoint of ``model_dir`` not evaluated yet, oldest first, as a
    trainer writes them; returns the last step evaluated.

    What was evaluated is what ``metrics.jsonl`` records (written by the recorders), so a
    restarted evaluator resumes where it stopped, and each checkpoint is evaluated once. It
    stops after evaluating the checkpoint of ``plan.train_steps``, or after ``timeout_secs``
    without a new checkpoint.
    """
    done = {record["step"] for record in summaries.read_metrics(model_dir)}
    last_step, waited_since = max(done, default=0), time.monotonic()
    if last_step >= plan.train_steps:
        say(f"the checkpoint of the final step {plan.train_steps} is evaluated: nothing to do")
        return last_step
    say(f"watching {model_dir} for checkpoints (final step {plan.train_steps})")
    while True:
        pending = [(n, p) for n, p in reversed(checkpoints.numbered_checkpoints(model_dir))]
        for step, prefix in (item for item in pending if item[0] not in done):
            done.add(step)
            try:
                model, state = evaluator.restore(prefix)
            except checkpoints.CheckpointError:
                if not tf.io.gfile.exists(f"{prefix}.index"):
                    say(f"{prefix} was deleted (keep_checkpoints) before it was evaluated")
                    continue
                raise
            results = evaluator.evaluate(model, input_fn, max_batches)
            train_loss, learning_rate = checkpoint_values(state)
            evaluation = Evaluation(
                step,
                plan.epoch(step),
                results,
                train_loss,
                learning_rate,
                model,
                prefix,
                evaluator.confusion,
                evaluator.first_batch,
                evaluator.first_outputs,
                evaluator.activations,
            )
            for record in recorders:
                record(evaluation)
            last_step, waited_since = step, time.monotonic()
            if step >= plan.train_steps:
                say(f"evaluated the checkpoint of the final step {step}: done")
                return step
        if time.monotonic() - waited_since > timeout_secs:
            say(f"no new checkpoint for {timeout_secs:g} s (eval_timeout_secs): stopping")
            return last_step
        time.sleep(poll_secs)
