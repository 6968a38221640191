"""Evaluation as a standalone object: of the live model during training, or of a checkpoint
(``--mode evaluate``, a separate evaluator process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from library.base.errors import first_line
from library.config import Params
from library.contract import Functions, model_feature_names
from library.engine import distribute, steps, update
from library.outputs import checkpoints
from library.outputs import run_state as run_state_file
from library.recorders.base import Evaluation, Recorders

BLOCK_PREFIX = "block"


def observer_model(model: keras.Model) -> keras.Model | None:
    """A model of ``model``'s layers giving ``(outputs, activations)``: its outputs and those
    of the layers named ``block...`` (the encoder's blocks) by name; None when there are no
    such layers (or the model is not functional)."""
    try:
        blocks = [
            layer
            for layer in model._flatten_layers(include_self=False)
            if layer.name.startswith(BLOCK_PREFIX)
        ]
        if not blocks:
            return None
        activations = {layer.name: layer.output for layer in blocks}
        return keras.Model(model.input, (model.output, activations))
    except (AttributeError, ValueError):
        return None


class Evaluator:
    """The eval loss (and its terms) and the project's metrics over an input function.

    Its metrics and step are built once per model and reused: evaluating often (every
    checkpoint) retraces nothing. Of the first batch it saw it keeps the batch, the model's
    outputs and the encoder blocks' activations, computed in the evaluation pass itself
    (for the recorders' figures and histograms); the metrics the recorders ask for
    (``Recorder.evaluation_metrics``) go to the evaluation's ``arrays``.

    Args:
        functions: the project's functions.
        params: the resolved configuration.
        strategy: the distribution strategy the metrics are created under.
        recorders: whose ``evaluation_metrics`` to accumulate too.
    """

    def __init__(
        self,
        functions: Functions,
        params: Params,
        strategy: tf.distribute.Strategy,
        recorders: Recorders | None = None,
    ):
        self.functions, self.params, self.strategy = functions, params, strategy
        self.recorders = recorders
        self._compiled: tuple | None = None  # (model, loss metrics, metrics, extras, eval step)
        # {(input_fn, features): its distributed dataset}, one per evaluation set
        self._datasets: dict[tuple, Any] = {}
        self._restorable: keras.Model | None = None  # built once, for checkpoints
        self.terms: tuple[str, ...] = ()  # the loss terms, once compiled
        self.arrays: dict[str, np.ndarray] = {}  # the recorders' metrics, last evaluation
        self.results: dict[str, float] = {}  # of the last evaluation
        self.first_batch: tuple | None = None  # (features, labels) of the last evaluation
        self.first_outputs = None  # the model's outputs on it
        self.activations: dict[str, np.ndarray] = {}  # each encoder block's output on it

    def evaluate(
        self, model: keras.Model, input_fn: Callable, max_batches: int | None = None
    ) -> dict[str, float]:
        """``{"loss": ..., "loss/<term>": ..., metric: ...}`` of ``model`` over ``input_fn``'s
        dataset.

        Args:
            model: the model (live or restored); built under this evaluator's strategy.
            input_fn: an input function of an optional input context.
            max_batches: stop after this many batches (None: the whole dataset).
        """
        dataset = self._dataset(input_fn, model_feature_names(model))
        _, losses, metrics, extras, eval_step = self._compile(model, dataset, input_fn)
        for metric in [*losses.values(), *metrics.values(), *extras.values()]:
            metric.reset_state()
        self.first_batch, self.first_outputs, self.activations = None, None, {}
        for batches, element in enumerate(dataset):
            if max_batches and batches >= max_batches:
                break
            features, labels, weight = steps.unpack(element)
            if batches == 0:
                self.first_batch = distribute.first_replica(self.strategy, (features, labels))
                observed = eval_step(features, labels, weight, observe=True)
                outputs, activations = distribute.first_replica(self.strategy, observed)
                self.first_outputs = outputs
                self.activations = {
                    name: np.asarray(tf.cast(value, tf.float32))
                    for name, value in activations.items()
                }
            else:
                eval_step(features, labels, weight)
        results = {name: float(m.result()) for name, m in losses.items()}
        results.update({name: float(m.result()) for name, m in metrics.items()})
        self.arrays = {name: np.asarray(m.result()) for name, m in extras.items()}
        self.results = results
        return results

    def evaluate_sets(
        self,
        model: keras.Model,
        input_fns: Callable | Mapping[str, Callable],
        max_batches: int | None = None,
    ) -> dict[str, float]:
        """``evaluate`` of one input function, or of several evaluation sets by name: each
        set's results under its name (``validation/loss``), in the sets' order; the first
        batch, outputs and arrays the recorders draw are the first set's."""
        if callable(input_fns):
            return self.evaluate(model, input_fns, max_batches)
        by_set = {}
        for name in reversed(list(input_fns)):  # the first set last: what stays is its own
            by_set[name] = self.evaluate(model, input_fns[name], max_batches)
        self.results = {
            f"{name}/{key}": value for name in input_fns for key, value in by_set[name].items()
        }
        return self.results

    def _dataset(self, input_fn: Callable, features):
        """The distributed dataset of ``input_fn`` (with the ``features`` the model takes),
        built once: each evaluation iterates it anew (building a pipeline costs a tenth of a
        second or more)."""
        key = (input_fn, tuple(features or ()))
        if key not in self._datasets:
            if len(self._datasets) >= 8:  # input functions made anew for each call
                self._datasets.clear()
            dataset = distribute.distribute_dataset(self.strategy, input_fn, features=features)
            self._datasets[key] = dataset
        return self._datasets[key]

    def _compile(self, model: keras.Model, dataset, input_fn: Callable) -> tuple:
        if self._compiled is None or self._compiled[0] is not model:
            loss_fn, params = self.functions.loss_fn, self.params
            spec = distribute.element_spec(self.strategy, dataset, input_fn)
            self.terms = update.loss_terms(loss_fn, model, params, spec)
            with self.strategy.scope():
                names = ["loss", *(f"loss/{term}" for term in self.terms)]
                losses = {name: keras.metrics.Mean(name=name) for name in names}
                metrics = dict(self.functions.metrics_fn(params))
                extras = self.recorders.evaluation_metrics(params) if self.recorders else {}
            eval_step = steps.build_eval_step(
                self.strategy,
                model,
                loss_fn,
                params,
                losses,
                {**metrics, **extras},
                observer_model(model),
            )
            self._compiled = (model, losses, metrics, extras, eval_step)
        return self._compiled

    def evaluation(
        self, step: int, epoch: float | None, model: keras.Model, checkpoint: str, trained: tuple
    ) -> Evaluation:
        """The ``Evaluation`` of the last ``evaluate`` (of ``model`` at ``step``, whose weights
        ``checkpoint`` holds), for the recorders; ``trained`` is what the step state recorded
        of the training before it (``StepState.recorded``: train loss, its terms, rate)."""
        train_loss, train_terms, learning_rate = trained
        return Evaluation(
            step=step,
            epoch=epoch,
            results=self.results,
            train_loss=train_loss,
            learning_rate=learning_rate,
            model=model,
            checkpoint=checkpoint,
            train_terms=train_terms,
            first_batch=self.first_batch,
            first_outputs=self.first_outputs,
            activations=self.activations,
            arrays=self.arrays,
        )

    def restore(self, prefix: str, terms=()) -> tuple[keras.Model, steps.StepState]:
        """This evaluator's own model (built once) with the weights of checkpoint ``prefix``.

        Returns the model and the step state the checkpoint holds (zeros for a checkpoint
        without one, such as the best checkpoint); ``terms`` names its loss terms.

        Raises:
            checkpoints.CheckpointError: the checkpoint does not hold this model's weights.
        """
        with self.strategy.scope():
            if self._restorable is None:
                self._restorable = self.functions.model_fn(self.params)
            state = steps.StepState(terms)
        model = self._restorable
        try:
            checkpoints.restore_from(tf.train.Checkpoint(model=model), prefix)
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            reason = first_line(error)
            raise checkpoints.CheckpointError(
                f"{prefix}: does not hold this model's weights ({reason}); was it trained "
                "with another model or other hyperparameters? (its folder's "
                "hyperparameters.yaml says)"
            ) from None
        tf.train.Checkpoint(state=state).restore(prefix).expect_partial()
        return model, state


def evaluate_continuously(
    evaluator: Evaluator,
    model_dir: str,
    plan,
    input_fn: Callable | Mapping[str, Callable],
    max_batches: int | None,
    recorders: Recorders,
    timeout_secs: float,
    say: Callable[[str], None] = print,
    poll_secs: float = 1.0,
) -> int:
    """Evaluates every checkpoint of ``model_dir`` not evaluated yet, oldest first, as a
    trainer writes them; returns the last step evaluated.

    What each recorder received is the evaluator's run state (``recorders.delivered``, saved
    beside the trainer's checkpoints as ``evaluator.state.json``), so a restarted evaluator
    resumes where it stopped and each checkpoint is evaluated once. A checkpoint the
    trainer deleted (``keep_checkpoints``) before it was read, or while it was, is named and
    skipped. It stops after evaluating the checkpoint of ``plan.train_steps``, or after
    ``timeout_secs`` without a new checkpoint.
    """
    seen = min(recorders.delivered.values(), default=-1)
    if seen >= plan.train_steps:
        say(f"the checkpoint of the final step {plan.train_steps} is evaluated: nothing to do")
        return seen
    say(f"watching {model_dir} for checkpoints (final step {plan.train_steps})")
    last_step, waited_since = max(seen, 0), time.monotonic()
    while True:
        listed = [(n, p) for n, p in reversed(checkpoints.numbered_checkpoints(model_dir))]
        for step, prefix in (item for item in listed if item[0] > seen):
            _say_deleted(seen, step, plan.checkpoint_every_steps, model_dir, say)
            seen = step
            if not recorders.pending(step):
                continue
            evaluation = _evaluate_checkpoint(evaluator, prefix, step, plan, input_fn, max_batches)
            if evaluation is None:
                say(f"{prefix} was deleted (keep_checkpoints) while it was evaluated: skipped")
                continue
            recorders.on_evaluation(evaluation)
            last_step, waited_since = step, time.monotonic()
            if step >= plan.train_steps:
                say(f"evaluated the checkpoint of the final step {step}: done")
                return step
        if time.monotonic() - waited_since > timeout_secs:
            say(f"no new checkpoint for {timeout_secs:g} s (eval_timeout_secs): stopping")
            return last_step
        time.sleep(poll_secs)


def _evaluate_checkpoint(evaluator, prefix, step, plan, input_fn, max_batches):
    """The evaluation of checkpoint ``prefix``; None when it was deleted before it was read
    whole."""
    try:
        # The training's terms, as its run state names them (a step of the project's own logs
        # others than loss_fn's); else loss_fn's, known once the evaluator has compiled.
        recorded = (run_state_file.read(prefix) or {}).get("terms")
        model, state = evaluator.restore(prefix, recorded or evaluator.terms)
        evaluator.evaluate_sets(model, input_fn, max_batches)
        if recorded is None and evaluator.terms and not state.terms:  # known now
            _, state = evaluator.restore(prefix, evaluator.terms)
    except (checkpoints.CheckpointError, tf.errors.NotFoundError):
        if tf.io.gfile.exists(f"{prefix}.index"):
            raise
        return None
    return evaluator.evaluation(step, plan.epoch(step), model, prefix, state.recorded())


def _say_deleted(seen: int, step: int, every: int, model_dir: str, say) -> None:
    """Names the checkpoints the trainer saved between ``seen`` and ``step`` (it saves every
    ``every`` steps) that were deleted before they were listed."""
    if every <= 0:
        return
    gone = [f"ckpt-{n}" for n in range((max(seen, 0) // every + 1) * every, step, every)]
    if gone:
        say(
            f"{', '.join(gone)} in {model_dir} were deleted (keep_checkpoints) before they "
            "could be evaluated: skipped"
        )
