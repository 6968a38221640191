"""Evaluation as a standalone object: of the live model during training, or of a checkpoint
(``--mode evaluate``, a separate evaluator process)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from library import checkpoints, distribute, steps
from library.config import Params
from library.contract import Functions


class Evaluator:
    """The eval loss and the project's metrics over an input function.

    Its metrics and step are built once per model and reused: evaluating often (every
    checkpoint) retraces nothing.
    """

    def __init__(self, functions: Functions, params: Params, strategy: tf.distribute.Strategy):
        self.functions, self.params, self.strategy = functions, params, strategy
        self._compiled: tuple | None = None  # (model, loss, metrics, eval step)
        self._restorable: keras.Model | None = None  # built once, for checkpoints

    def evaluate(
        self, model: keras.Model, input_fn: Callable, max_batches: int | None = None
    ) -> dict[str, float]:
        """``{"loss": ..., metric: ...}`` of ``model`` over ``input_fn``'s dataset.

        Args:
            model: the model (live or restored); built under this evaluator's strategy.
            input_fn: an input function of an optional input context.
            max_batches: stop after this many batches (None: the whole dataset).
        """
        _, loss, metrics, eval_step = self._compile(model)
        for metric in [loss, *metrics.values()]:
            metric.reset_state()
        dataset = distribute.distribute_dataset(self.strategy, input_fn)
        for batches, (features, labels) in enumerate(dataset):
            if max_batches and batches >= max_batches:
                break
            eval_step(features, labels)
        results = {"loss": float(loss.result())}
        results.update({name: float(m.result()) for name, m in metrics.items()})
        return results

    def _compile(self, model: keras.Model) -> tuple:
        if self._compiled is None or self._compiled[0] is not model:
            with self.strategy.scope():
                loss = keras.metrics.Mean(name="loss")
                metrics = dict(self.functions.metrics_fn(self.params))
            eval_step = steps.build_eval_step(
                self.strategy, model, self.functions.loss_fn, self.params, loss, metrics
            )
            self._compiled = (model, loss, metrics, eval_step)
        return self._compiled

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
