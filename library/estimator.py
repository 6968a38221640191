"""An Estimator for TensorFlow 2 and Keras 3: train, evaluate, predict, export, resume.

The contract for ``project/`` (the only place it is written down):

* ``input_fn(file_pattern, mode, params) -> tf.data.Dataset`` of ``(features, labels)``
  batches; ``features`` is a dict with at least ``image``. ``mode`` is a ``ModeKeys`` value.
  (The Estimator itself takes zero-argument input functions, as tf.estimator did.)
* ``model_fn(params) -> keras.Model``: a new, built model each call. It is called with
  ``training=True`` in training and ``False`` in evaluation and prediction, so train and eval
  share weights but differ in dropout and batch norm.
* ``loss_fn(labels, outputs, params) -> per-example loss``. The library averages it over the
  global batch, scales it for replicas and adds the model's regularisation losses.
* ``optimizer_fn(params, total_steps) -> keras.optimizers.Optimizer`` (schedules built there).
* optional ``metrics_fn(params) -> {name: keras.metrics.Metric}``, updated with
  ``(labels, outputs)``; ``predictions_fn(outputs) -> {name: tensor}``; and
  ``serving_fn(encoded_images, params) -> features`` for the exported model's signature.

``params`` is the resolved, frozen configuration (a mapping with attribute access).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import keras
import tensorflow as tf

from library import checkpoints, config, inputs, plots, schedule, steps, summaries
from library.files import atomic_write_text

InputFn = Callable[[], tf.data.Dataset]


@dataclass(frozen=True)
class TrainSpec:
    input_fn: InputFn
    max_steps: int


@dataclass(frozen=True)
class EvalSpec:
    input_fn: InputFn
    steps: int | None = None  # batches per evaluation; None: the whole dataset


class DivergedError(Exception):
    """The loss stayed NaN/Inf for ``max_nonfinite_steps`` steps in a row."""


@dataclass
class _Training:
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    state: steps.StepState
    manager: tf.train.CheckpointManager
    best: checkpoints.BestExporter
    train_loop: Callable
    summaries: summaries.Summaries
    iterator: Iterator | None  # created early when its position is checkpointed


class Estimator:
    """Wires the project's pure functions into a train / evaluate / predict / export engine.

    Args:
        model_fn, loss_fn, optimizer_fn: the project's functions (see the module docstring).
        params: the resolved configuration (``library.config.Params``).
        metrics_fn, predictions_fn, serving_fn: optional project functions.
        plan: durations in steps (``library.schedule.make_plan``); by default from ``params``
            with one batch taken as an epoch.
        class_names: names the exported model returns beside class ids.
        say: where one-line messages go.
    """

    def __init__(
        self,
        model_fn: Callable,
        loss_fn: Callable,
        optimizer_fn: Callable,
        params: config.Params,
        metrics_fn: Callable | None = None,
        predictions_fn: Callable | None = None,
        serving_fn: Callable | None = None,
        plan: schedule.Plan | None = None,
        class_names: Sequence[str] | None = None,
        say: Callable[[str], None] = print,
    ):
        self.model_fn, self.loss_fn, self.optimizer_fn = model_fn, loss_fn, optimizer_fn
        self.metrics_fn = metrics_fn or (lambda params: {})
        self.predictions_fn = predictions_fn or (lambda outputs: {"outputs": outputs})
        self.serving_fn = serving_fn
        self.params = params
        self.plan = plan or schedule.make_plan(params, params.train_batch_size)
        self.class_names = class_names
        self.say = say
        self.model_dir = params.model_dir
        self._evaluation: tuple | None = None  # (model, loss, metrics, eval_step), built once
        self._serving: tf.Module | None = None

    # -- training ------------------------------------------------------------------------

    def train(self, input_fn: InputFn, max_steps: int) -> int:
        """Trains until ``max_steps`` (resuming from ``model_dir``); returns the final step."""
        return self._fit(TrainSpec(input_fn, max_steps), None)

    def _fit(self, train_spec: TrainSpec, eval_spec: EvalSpec | None) -> int:
        run = self._start_training(train_spec)
        step = int(run.state.step)
        if step >= train_spec.max_steps:
            self.say(f"already trained to step {step} (max {train_spec.max_steps}): nothing to do")
            return step
        iterator = run.iterator
        if iterator is None:
            iterator = iter(inputs.prefetch_to_accelerator(train_spec.input_fn()))
        if step == 0:
            features, _ = next(iterator)  # one batch for TensorBoard's picture of the input
            run.summaries.image_grid(features["image"], step)
        progress = _Progress(
            self.params.progress,
            train_spec.max_steps,
            self.plan,
            self.params.train_batch_size,
            step,
        )
        while step < train_spec.max_steps:
            chunk = min(
                self.params.steps_per_execution,
                schedule.next_boundary(step, self.plan, train_spec.max_steps) - step,
            )
            # One value crosses to the host per call: the NaN streak (the step is known here).
            in_a_row = int(run.train_loop(iterator, tf.constant(chunk, tf.int64)))
            previous, step = step, step + chunk
            self._check_divergence(run, step, in_a_row)
            progress.advance(step)
            self._after_steps(run, previous, step, train_spec.max_steps, eval_spec, progress)
        progress.finish()
        run.summaries.flush()
        return step

    def _after_steps(self, run, previous, step, last, eval_spec, progress) -> None:
        """The one place that decides what happens after a chunk of steps."""
        plan = self.plan
        evaluate = eval_spec is not None and schedule.is_time(
            step, plan.eval_every_steps, previous, last
        )
        if schedule.is_time(step, plan.log_every_steps, previous, last) or evaluate:
            values = self._log_train(run, step)
            values.update(progress.log(step, values))
            run.summaries.scalars(run.summaries.train, values, step)
        if evaluate or schedule.is_time(step, plan.checkpoint_every_steps, previous, last):
            self._save_checkpoint(run, step)
        if evaluate:
            self._evaluate_during_training(run, eval_spec, step, progress)

    def _save_checkpoint(self, run: _Training, step: int) -> None:
        try:
            run.manager.save(checkpoint_number=step)
        except tf.errors.FailedPreconditionError as error:  # an iterator TF cannot serialize
            reason = error.message.strip().splitlines()[0]
            raise checkpoints.CheckpointError(
                f"checkpoint_input_pipeline: this input pipeline cannot be saved ({reason}); "
                "set checkpoint_input_pipeline: false or make the pipeline stateless"
            ) from None

    def _restore_input_position(self, iterator, prefix: str) -> None:
        try:
            checkpoints.restore_from(tf.train.Checkpoint(iterator=iterator), prefix)
            self.say("the input pipeline resumes at its saved position")
        except (AssertionError, ValueError, tf.errors.OpError):
            self.say(f"{prefix} holds no input position: the input pipeline starts afresh")

    def _start_training(self, train_spec: TrainSpec) -> _Training:
        max_steps = train_spec.max_steps
        keras.utils.set_random_seed(self.params.random_seed)
        tf.io.gfile.makedirs(self.model_dir)
        differences = config.save_config(self.params, self.model_dir)
        if differences:
            self.say(
                f"configuration differs from the one saved in {self.model_dir}: "
                + "; ".join(differences)
            )
        model = self.model_fn(self.params)
        optimizer = self.optimizer_fn(self.params, max_steps)
        optimizer.build(model.trainable_variables)
        state = steps.StepState()
        saved = {"model": model, "optimizer": optimizer, "state": state}
        restored = checkpoints.restore_latest(
            tf.train.Checkpoint(**saved), self.model_dir, self.say
        )
        if restored:
            step = int(state.step)
            self.say(f"resuming from {restored} at step {step} (epoch {self.plan.epoch(step):.2f})")
            summaries.truncate_metrics(self.model_dir, step)
        iterator = None
        if self.params.checkpoint_input_pipeline:
            iterator = iter(inputs.prefetch_to_accelerator(train_spec.input_fn()))
            saved["iterator"] = iterator
            if restored:  # apart from the rest: an older checkpoint may not hold it
                self._restore_input_position(iterator, restored)
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(**saved),
            self.model_dir,
            max_to_keep=self.params.keep_checkpoints,
            step_counter=state.step,
        )
        best = checkpoints.BestExporter(
            self.params.best_model_dir,
            tf.train.Checkpoint(model=model, state=state),
            self.params.best_metric,
            self.params.best_mode,
        )
        if best.best:
            self.say(
                f"best so far: {best.metric} {best.best['value']:.4g} at step {best.best['step']}"
            )
        _save_model_summary(model, self.model_dir)
        train_step = steps.build_train_step(model, self.loss_fn, optimizer, self.params, state)
        return _Training(
            model,
            optimizer,
            state,
            manager,
            best,
            steps.build_train_loop(train_step, self.params.xla, state),
            summaries.Summaries(self.model_dir),
            iterator,
        )

    def _check_divergence(self, run: _Training, step: int, in_a_row: int) -> None:
        if in_a_row >= self.params.max_nonfinite_steps:
            last_good = run.manager.latest_checkpoint or "none yet"
            raise DivergedError(
                f"loss or gradient was NaN/Inf for {in_a_row} steps in a row at step {step} "
                f"(weights kept from before); last good checkpoint: {last_good}; "
                "lower the learning_rate or check the input data"
            )

    def _log_train(self, run: _Training, step: int) -> dict:
        values = {
            "loss": float(run.state.train_loss.result()),
            "learning_rate": float(run.optimizer.learning_rate),
            "grad_norm": float(run.state.grad_norm),
            "param_norm": float(tf.linalg.global_norm(run.model.trainable_variables)),
            "nonfinite_steps": int(run.state.nonfinite_total),
        }
        run.state.train_loss.reset_state()
        return values

    def _evaluate_during_training(self, run, eval_spec, step, progress) -> None:
        results = self._run_evaluation(run.model, eval_spec.input_fn, eval_spec.steps)
        epoch = self.plan.epoch(step)
        train_loss = progress.period_loss()
        run.summaries.scalars(run.summaries.eval, results, step)
        run.summaries.weights(run.model, step)
        run.summaries.flush()
        record = {"step": step, "epoch": round(epoch, 4), "train_loss": train_loss}
        record.update({f"eval_{k}": v for k, v in results.items()})
        record["learning_rate"] = float(run.optimizer.learning_rate)
        summaries.append_metrics(self.model_dir, record)
        plots.plot_metrics(
            summaries.read_metrics(self.model_dir), os.path.join(self.model_dir, "plots")
        )
        export_fn = None
        if self.serving_fn is not None:  # no serving_fn: the best checkpoint, no SavedModel

            def export_fn(path):
                self._export(run.model, path, self.class_names)

        improved = run.best.maybe_export(results, step, epoch, export_fn)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in results.items())
        self.say(
            f"eval at step {step} (epoch {epoch:.2f}): {shown}"
            + ("  [new best]" if improved else "")
        )

    # -- evaluation and prediction --------------------------------------------------------

    def _run_evaluation(
        self, model: keras.Model, input_fn: InputFn, max_batches: int | None
    ) -> dict:
        if self._evaluation is None or self._evaluation[0] is not model:
            loss = keras.metrics.Mean(name="loss")
            metrics = dict(self.metrics_fn(self.params))
            eval_step = steps.build_eval_step(model, self.loss_fn, self.params, loss, metrics)
            self._evaluation = (model, loss, metrics, eval_step)
        _, loss, metrics, eval_step = self._evaluation
        for metric in [loss, *metrics.values()]:
            metric.reset_state()
        for batches, (features, labels) in enumerate(input_fn()):
            if max_batches and batches >= max_batches:
                break
            eval_step(features, labels)
        results = {"loss": float(loss.result())}
        results.update({name: float(m.result()) for name, m in metrics.items()})
        return results

    def restore_model(self, checkpoint: str = "latest") -> tuple[keras.Model, str]:
        """A new model with the weights of ``checkpoint`` (latest, best, a folder or a prefix)."""
        prefix = checkpoints.resolve_checkpoint(
            checkpoint, self.model_dir, self.params.best_model_dir
        )
        model = self.model_fn(self.params)
        checkpoints.restore_from(tf.train.Checkpoint(model=model), prefix)
        return model, prefix

    def evaluate(
        self, input_fn: InputFn, steps: int | None = None, checkpoint: str = "latest"
    ) -> dict:
        """Evaluates a checkpoint; returns ``{"loss": ..., metric: ...}``."""
        model, prefix = self.restore_model(checkpoint)
        results = self._run_evaluation(model, input_fn, steps)
        results["checkpoint"] = prefix
        return results

    def predict(self, input_fn: InputFn, checkpoint: str = "latest") -> Iterator[dict]:
        """Yields one dict of predictions per example (plus ``filename`` when given)."""
        model, _ = self.restore_model(checkpoint)
        predict_batch = tf.function(
            lambda f: self.predictions_fn(model(steps.model_inputs(model, f), training=False)),
            reduce_retracing=True,
        )
        for element in input_fn():
            features = element[0] if isinstance(element, tuple) else element
            batch = {k: v.numpy() for k, v in predict_batch(features).items()}
            if "filename" in features:
                batch["filename"] = features["filename"].numpy()
            for i in range(len(next(iter(batch.values())))):
                yield {k: v[i] for k, v in batch.items()}

    # -- export ---------------------------------------------------------------------------

    def export_saved_model(self, export_dir: str, checkpoint: str = "latest") -> str:
        """Exports a SavedModel whose ``serving_default`` takes encoded image bytes.

        Written to ``export_dir/<timestamp>`` through a temporary folder; returns the path.
        """
        model, _ = self.restore_model(checkpoint)
        final = os.path.join(export_dir, str(int(time.time())))
        temporary = f"{final}.tmp-{os.getpid()}"
        self._export(model, temporary, self.class_names)
        tf.io.gfile.rename(temporary, final)
        return final

    def _export(
        self, model: keras.Model, directory: str, class_names: Sequence[str] | None
    ) -> None:
        if self.serving_fn is None:
            raise ValueError("export needs a serving_fn(encoded_images, params) -> features")
        if self._serving is None or self._serving.model is not model:
            self._serving = self._serving_module(model, class_names)  # traced once, saved often
        tf.saved_model.save(
            self._serving, directory, signatures={"serving_default": self._serving.serve}
        )

    def _serving_module(self, model: keras.Model, class_names: Sequence[str] | None) -> tf.Module:
        params, serving_fn, predictions_fn = self.params, self.serving_fn, self.predictions_fn
        names = tf.constant(list(class_names)) if class_names else None

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(image_bytes):
            features = steps.model_inputs(model, serving_fn(image_bytes, params))
            predictions = dict(predictions_fn(model(features, training=False)))
            if names is not None and "class" in predictions:
                predictions["class_name"] = tf.gather(names, predictions["class"])
            return predictions

        module = tf.Module()
        module.model, module.serve = model, serve
        return module


def train_and_evaluate(estimator: Estimator, train_spec: TrainSpec, eval_spec: EvalSpec) -> int:
    """Trains, evaluating every ``plan.eval_every_steps`` and at the end; returns the step."""
    return estimator._fit(train_spec, eval_spec)


def _save_model_summary(model: keras.Model, model_dir: str) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    atomic_write_text(os.path.join(model_dir, "model_summary.txt"), "\n".join(lines) + "\n")


class _Progress:
    """A progress bar on a terminal, plain log lines elsewhere; keeps the period's loss."""

    def __init__(
        self, mode: str, total: int, plan: schedule.Plan, batch_size: int, start_step: int
    ):
        interactive = mode == "bar" or (mode == "auto" and sys.stdout.isatty())
        self.bar = (
            keras.utils.Progbar(total, stateful_metrics=["loss", "lr"]) if interactive else None
        )
        self.total, self.plan, self.batch_size = total, plan, batch_size
        self.started = self.last_time = time.perf_counter()
        self.last_step = start_step
        self.losses: list[tuple[float, int]] = []

    def advance(self, step: int) -> None:
        if self.bar:
            self.bar.update(step)

    def log(self, step: int, values: dict) -> dict:
        now = time.perf_counter()
        steps_done = step - self.last_step
        rate = steps_done / max(now - self.last_time, 1e-9)
        if math.isfinite(values["loss"]):
            self.losses.append((values["loss"], steps_done))
        self.last_time, self.last_step = now, step
        speed = {"steps_per_sec": rate, "examples_per_sec": rate * self.batch_size}
        if self.bar:
            self.bar.update(step, [("loss", values["loss"]), ("lr", values["learning_rate"])])
            return speed
        eta = (self.total - step) / rate if rate > 0 else 0
        print(
            f"step {step}/{self.total} (epoch {self.plan.epoch(step):.2f}) loss {values['loss']:.4f} "
            f"lr {values['learning_rate']:.2e} {rate:.1f} steps/s {rate * self.batch_size:.0f} ex/s "
            f"ETA {_duration(eta)}",
            flush=True,
        )
        return speed

    def period_loss(self) -> float | None:
        """Mean train loss since the last evaluation (weighted by steps), then starts anew."""
        total = sum(n for _, n in self.losses)
        mean = sum(v * n for v, n in self.losses) / total if total else None
        self.losses = []
        return mean

    def finish(self) -> None:
        if self.bar:
            print()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
