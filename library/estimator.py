"""The public facade: an Estimator for TensorFlow 2 and Keras 3 (train, evaluate, predict,
export) and ``train_and_evaluate``, on the project's functions (``library/contract.py``).

It only assembles the parts: ``trainer.py`` (the training state), ``loop.py`` (the outer
loop), ``actions.py`` (what happens between chunks of steps), ``evaluator.py`` and
``export.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import keras
import tensorflow as tf

from library import (
    actions,
    checkpoints,
    config,
    distribute,
    export,
    provenance,
    summaries,
)
from library.contract import Functions
from library.evaluator import Evaluator, evaluate_continuously
from library.files import atomic_write_text
from library.lock import FolderLock
from library.loop import DivergedError, Interrupted, StopRequest, run_loop
from library.patience import Patience
from library.progress import Progress
from library.schedule import Plan
from library.trainer import Trainer, create_trainer

__all__ = [
    "DivergedError",
    "Estimator",
    "EvalSpec",
    "Interrupted",
    "TrainSpec",
    "train_and_evaluate",
]

InputFn = Callable[..., tf.data.Dataset]  # of an optional tf.distribute.InputContext


@dataclass(frozen=True)
class TrainSpec:
    input_fn: InputFn
    max_steps: int


@dataclass(frozen=True)
class EvalSpec:
    input_fn: InputFn
    steps: int | None = None  # batches per evaluation; None: the whole dataset


class Estimator:
    """Wires the project's pure functions into a train / evaluate / predict / export engine.

    Args:
        model_fn, loss_fn, optimizer_fn: the project's functions (``library/contract.py``).
        params: the resolved configuration (``library.config.Params``).
        metrics_fn, predictions_fn, serving_fn: optional project functions.
        plan: the run's durations in steps (``library.schedule.make_plan``); needed to train,
            never guessed.
        class_names: names the exported model returns beside class ids.
        strategy: the ``tf.distribute`` strategy (default: ``distribute.create_strategy()``).
        data_manifests: the datasets' manifest files, whose hashes ``provenance.json`` keeps.
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
        plan: Plan | None = None,
        class_names: Sequence[str] | None = None,
        strategy: tf.distribute.Strategy | None = None,
        data_manifests: Sequence[str] = (),
        say: Callable[[str], None] = print,
    ):
        optional = {"metrics_fn": metrics_fn, "predictions_fn": predictions_fn}
        self.functions = Functions(
            model_fn,
            loss_fn,
            optimizer_fn,
            serving_fn=serving_fn,
            **{k: v for k, v in optional.items() if v is not None},
        )
        self.params = params
        self.plan = plan
        self.class_names = class_names
        self.strategy = strategy or distribute.create_strategy(params)
        self.data_manifests = tuple(data_manifests)
        self.say = say
        self.evaluator = Evaluator(self.functions, params, self.strategy)
        # The best's SavedModel export (a model of its own and its serving module), built once.
        self._export: tuple[keras.Model, tf.Module] | None = None

    # -- training ------------------------------------------------------------------------

    def train(
        self, input_fn: InputFn, max_steps: int | None = None, eval_spec: EvalSpec | None = None
    ) -> int:
        """Trains until ``max_steps`` (default: the plan's), resuming from ``model_dir``.

        With ``eval_spec``, evaluates every ``plan.eval_every_steps`` and at the end (what
        ``train_and_evaluate`` does). Returns the final step.
        """
        if self.plan is None:
            raise ValueError(
                "training needs a plan: Estimator(..., plan=schedule.make_plan(params, records))"
            )
        max_steps = max_steps or self.plan.train_steps
        params, chief = self.params, distribute.is_chief(self.strategy)
        if not chief:  # it resumes from the chief's folder and writes into one of its own
            params = self._worker_params()
        tf.io.gfile.makedirs(params.model_dir)
        try:
            with FolderLock(params.model_dir, say=self.say), StopRequest() as stop:
                writers = summaries.Summaries(params.model_dir)
                try:
                    trainer = self._start(input_fn, writers, params)
                    progress = Progress(
                        params.progress,
                        max_steps,
                        trainer.plan,
                        params.train_batch_size,
                        trainer.step,
                    )
                    steps_actions = self._actions(
                        trainer, writers, progress, eval_spec, stop, params
                    )
                    step = run_loop(
                        trainer,
                        max_steps,
                        steps_actions,
                        progress,
                        params.steps_per_execution,
                        params.max_nonfinite_steps,
                        stop,
                        self.say,
                    )
                    distribute.barrier(self.strategy)
                    return step
                finally:
                    writers.flush()
        finally:
            if not chief:
                tf.io.gfile.rmtree(params.model_dir)

    def _worker_params(self) -> config.Params:
        """The parameters of a worker that is not the chief: TensorFlow has every worker save
        checkpoints (the saves take part in collectives), so each writes into a temporary
        folder of its own. It starts from a copy of the chief's metrics.jsonl: decisions
        made from it (catching up an evaluation, patience) must be the same on all workers,
        or their collectives hang."""
        chief_dir = self.params.model_dir
        own = distribute.worker_dir(chief_dir, self.strategy)
        if tf.io.gfile.exists(own):  # left by a worker that was killed
            tf.io.gfile.rmtree(own)
        tf.io.gfile.makedirs(own)
        metrics = os.path.join(chief_dir, summaries.METRICS_FILE)
        if tf.io.gfile.exists(metrics):
            tf.io.gfile.copy(metrics, os.path.join(own, summaries.METRICS_FILE))
        return self.params.replace(model_dir=own, best_model_dir=os.path.join(own, "best"))

    def _start(
        self, input_fn: InputFn, writers: summaries.Summaries, params: config.Params
    ) -> Trainer:
        """Restores (or creates) the training state, then records what this start used."""
        trainer = create_trainer(
            self.functions,
            params,
            self.plan,
            input_fn,
            self.strategy,
            writers.input_picture,
            self.say,
            restore_dir=self.params.model_dir,
        )
        step = trainer.step
        resumed_at = step if trainer.restored else None
        differences = config.save_config(params, params.model_dir, resumed_at)
        if differences:
            self.say(
                f"configuration changed from step {step} (recorded in "
                f"{config.CHANGES_FILE}): " + "; ".join(differences)
            )
        project_dir = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv[0] else "."
        provenance.record(params.model_dir, project_dir, self.data_manifests, step, self.say)
        if trainer.restored:
            self.say(
                f"resuming from {trainer.restored} at step {step} "
                f"(epoch {trainer.plan.epoch(step):.2f})"
            )
        if trainer.plan.schedule_steps != self.plan.train_steps:
            self.say(
                f"the learning-rate schedule keeps the length it started with "
                f"({trainer.plan.schedule_steps} steps) so that the rate stays continuous"
            )
        _save_model_summary(trainer.model, params.model_dir)
        return trainer

    def _actions(self, trainer, writers, progress, eval_spec, stop, params) -> list[actions.Action]:
        plan = trainer.plan
        evaluate_every = plan.eval_every_steps if eval_spec is not None else 0
        log = actions.LogProgress(
            (plan.log_every_steps, evaluate_every), trainer, progress, writers.train
        )
        saver = actions.SaveCheckpoint((plan.checkpoint_every_steps, evaluate_every), trainer)
        train_actions = [log, saver]
        if params.profile_steps:
            first, last = params.profile_steps
            directory = os.path.join(params.model_dir, "profile")
            train_actions.append(actions.Profile(first, last, directory, trainer.step, self.say))
        if eval_spec is None:
            return train_actions
        # This run writes metrics.jsonl: the evaluations after the step it resumed from will
        # be made again.
        summaries.truncate_metrics(params.model_dir, trainer.step)
        best = checkpoints.BestExporter(params.best_model_dir, params.best_metric, params.best_mode)
        if best.best:
            self.say(
                f"best so far: {best.metric} {best.best['value']:.4g} at step {best.best['step']}"
            )
        # The other workers' outputs are removed at the end: they export nothing.
        chief = distribute.is_chief(self.strategy)
        exports = self.functions.serving_fn and params.best_saved_model and chief
        recorders = actions.evaluation_recorders(
            params.model_dir,
            writers,
            best,
            self._export_checkpoint if exports else None,
            progress.say,
            self.functions.predictions_fn,
            self.class_names,
            params.plots,
        )
        patience = Patience.from_params(params)
        if patience.active:  # its state is what the recorded evaluations make it
            patience.replay(summaries.read_metrics(params.model_dir))
            trainer.state.lr_multiplier.assign(patience.multiplier)
            # After the row of metrics.jsonl: the record it replays at the next start.
            recorders.append(actions.ApplyPatience(patience, trainer, stop, progress.say))
            if patience.stopped_at is not None:
                stop.ask(
                    f"{patience.stop_reason()}: nothing more to train (raise "
                    "early_stopping_patience, or train into a new model_dir)"
                )
        evaluate = actions.Evaluate(
            plan.eval_every_steps,
            trainer,
            saver,
            self.evaluator,
            eval_spec.input_fn,
            eval_spec.steps,
            recorders,
            progress,
        )
        evaluate.catch_up(self.say)
        return [*train_actions, evaluate]

    # -- evaluation, prediction, export ----------------------------------------------------

    def evaluate_continuously(
        self, input_fn: InputFn, steps: int | None = None, poll_secs: float = 1.0
    ) -> int:
        """Evaluates each new checkpoint of ``model_dir`` beside a trainer (``--mode train``),
        writing what in-loop evaluation writes: ``eval/`` summaries, ``metrics.jsonl``, plots
        and the best checkpoint. The trainer and this evaluator never write the same file.

        Returns the last step evaluated (see ``library.evaluator.evaluate_continuously``).
        """
        if self.plan is None:
            raise ValueError("continuous evaluation needs a plan (it stops at its train_steps)")
        params = self.params
        tf.io.gfile.makedirs(params.model_dir)
        with FolderLock(params.model_dir, ".lock-evaluator", say=self.say):
            writers = summaries.Summaries(params.model_dir, train=False)
            best = checkpoints.BestExporter(
                params.best_model_dir, params.best_metric, params.best_mode
            )
            exports = self.functions.serving_fn and params.best_saved_model
            recorders = actions.evaluation_recorders(
                params.model_dir,
                writers,
                best,
                self._export_checkpoint if exports else None,
                self.say,
                self.functions.predictions_fn,
                self.class_names,
                params.plots,
            )
            try:
                return evaluate_continuously(
                    self.evaluator,
                    params.model_dir,
                    self.plan,
                    input_fn,
                    steps,
                    recorders,
                    params.eval_timeout_secs,
                    self.say,
                    poll_secs,
                )
            finally:
                for recorder in recorders:
                    getattr(recorder, "finish", lambda: None)()

    def resolve_checkpoint(self, checkpoint: str = "latest") -> str:
        """The prefix of ``checkpoint``: latest, best, a folder or a prefix."""
        return checkpoints.resolve_checkpoint(
            checkpoint, self.params.model_dir, self.params.best_model_dir
        )

    def restore_model(self, checkpoint: str = "latest") -> tuple[keras.Model, str]:
        """A model with the weights of ``checkpoint`` (latest, best, a folder or a prefix)."""
        prefix = self.resolve_checkpoint(checkpoint)
        model, _ = self.evaluator.restore(prefix)
        return model, prefix

    def evaluate(
        self, input_fn: InputFn, steps: int | None = None, checkpoint: str = "latest"
    ) -> dict:
        """Evaluates a checkpoint; returns ``{"loss": ..., metric: ..., "checkpoint": prefix}``."""
        model, prefix = self.restore_model(checkpoint)
        results = self.evaluator.evaluate(model, input_fn, steps)
        results["checkpoint"] = prefix
        return results

    def predict(self, input_fn: InputFn, checkpoint: str = "latest") -> Iterator[dict]:
        """Yields one dict of predictions per example (plus ``filename`` when given)."""
        model, _ = self.restore_model(checkpoint)
        yield from export.predict(model, input_fn, self.functions.predictions_fn)

    def export_saved_model(self, export_dir: str, checkpoint: str = "latest") -> str:
        """Exports a SavedModel whose ``serving_default`` takes encoded image bytes.

        Written to ``export_dir/<timestamp>`` through a temporary folder; returns the path.
        """
        model, prefix = self.restore_model(checkpoint)
        module = export.serving_module(model, self.functions, self.params, self.class_names)
        self.say(f"exporting {prefix}")
        return export.export_saved_model(module, export_dir)

    def _export_checkpoint(self, prefix: str, directory: str) -> None:
        """Exports checkpoint ``prefix`` (the best) as a SavedModel into ``directory``.

        It runs in the background beside training and evaluation, so it has a model of its
        own (built outside the strategy). That model and its serving function are built once:
        each later export reuses the traced function (a first export costs about twice what
        the next ones do).
        """
        if self._export is None:
            # Outside the strategy: under multi_worker, variables created in its scope are
            # broadcast from the chief, and the other workers create none at this time.
            model = self.functions.model_fn(self.params)
            module = export.serving_module(model, self.functions, self.params, self.class_names)
            self._export = (model, module)
        model, module = self._export
        checkpoints.restore_from(tf.train.Checkpoint(model=model), prefix)
        export.save_serving_module(module, directory)


def train_and_evaluate(estimator: Estimator, train_spec: TrainSpec, eval_spec: EvalSpec) -> int:
    """Trains, evaluating every ``plan.eval_every_steps`` and at the end; returns the step."""
    return estimator.train(train_spec.input_fn, train_spec.max_steps, eval_spec=eval_spec)


def _save_model_summary(model: keras.Model, model_dir: str) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    atomic_write_text(os.path.join(model_dir, "model_summary.txt"), "\n".join(lines) + "\n")
