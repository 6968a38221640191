"""The public facade: an Estimator for TensorFlow 2 and Keras 3 (train, evaluate, predict,
export) and ``train_and_evaluate``, on the project's functions (``library/contract.py``).

It only assembles the parts: ``trainer.py`` (the training state), ``loop.py`` (the outer
loop), ``actions.py`` (what happens between chunks of steps), ``evaluator.py``, the
recorders (``library/recorders``) and the outputs (``library/outputs``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from library import config
from library.base.files import atomic_write_text, remove_tree
from library.contract import Functions
from library.engine import actions, distribute
from library.engine.evaluator import Evaluator, evaluate_continuously
from library.engine.loop import StopRequest, run_loop
from library.engine.run_state import RunState
from library.engine.schedule import Plan
from library.engine.trainer import Trainer, create_trainer
from library.monitor.goodput import Goodput
from library.monitor.progress import Progress
from library.outputs import checkpoints, decided, export, provenance
from library.outputs import run_state as run_state_file
from library.outputs.best import BestExporter
from library.outputs.lock import FolderLock
from library.recorders.base import Action, Recorder, Recorders, Run
from library.recorders.best import KeepBest
from library.recorders.console import SayEvaluation
from library.recorders.hparams import HParams
from library.recorders.metrics_log import AppendMetrics
from library.recorders.patience import ApplyPatience, Patience
from library.recorders.plots import DrawPlots
from library.recorders.summaries import Summaries, WriteEvalSummaries

__all__ = ["Estimator", "EvalSpec", "TrainSpec", "train_and_evaluate"]

InputFn = Callable[..., tf.data.Dataset]  # of an optional tf.distribute.InputContext
EVALUATOR = "evaluator"  # the continuous evaluator's run state: evaluator.state.json


@dataclass(frozen=True)
class TrainSpec:
    input_fn: InputFn
    max_steps: int


@dataclass(frozen=True)
class EvalSpec:
    input_fn: InputFn | Mapping[str, InputFn]  # one, or several evaluation sets by name
    steps: int | None = None  # batches per evaluation; None: the whole dataset


class Estimator:
    """Wires the project's pure functions into a train / evaluate / predict / export engine.

    Args:
        model_fn, loss_fn, optimizer_fn: the project's functions (``library/contract.py``).
        params: the resolved configuration (``library.config.Params``); the project's
            ``prepare_fn``, when given, fills in what the data decides first
            (``library/outputs/decided.py``).
        plan: the run's durations in steps (``library.engine.schedule.make_plan``); needed
            to train, never guessed.
        strategy: the ``tf.distribute`` strategy (default: ``distribute.create_strategy()``).
        data_manifests: the datasets' manifest files, whose hashes ``provenance.json`` keeps.
        callbacks: recorders and actions of the caller's, beside those of ``callbacks_fn``.
        say: where one-line messages go.
        data_from: for an Estimator that does not train, the checkpoint (latest, best, a
            folder or a prefix) whose saved data-decided values to use instead of calling
            ``prepare_fn``; None (training): ``prepare_fn`` decides, and a resume whose
            data decides otherwise is refused.
        **functions: the optional contract functions by name (``metrics_fn``,
            ``predictions_fn``, ``serving_inputs``, ``serving_fn``, ``callbacks_fn``, ...).
    """

    def __init__(
        self,
        model_fn: Callable,
        loss_fn: Callable,
        optimizer_fn: Callable,
        params: config.Params,
        *,
        plan: Plan | None = None,
        strategy: tf.distribute.Strategy | None = None,
        data_manifests: Sequence[str] = (),
        callbacks: Sequence[Recorder | Action] = (),
        say: Callable[[str], None] = print,
        data_from: str | None = None,
        **functions: Callable,
    ):
        self.functions = Functions.from_mapping(
            {"model_fn": model_fn, "loss_fn": loss_fn, "optimizer_fn": optimizer_fn, **functions}
        )
        self.started = time.time()  # the goodput account's start-up counts from here
        self.params, self.data_decided = self._prepare(params, data_from)
        self.plan = plan
        self.strategy = strategy or distribute.create_strategy(self.params)
        self.data_manifests = tuple(data_manifests)
        self.say = say
        extra = [*callbacks, *self.functions.callbacks_fn(self.params)]
        self.project_recorders = [c for c in extra if isinstance(c, Recorder)]
        self.project_actions = [c for c in extra if isinstance(c, Action)]
        self.evaluator = Evaluator(
            self.functions, self.params, self.strategy, Recorders(self.project_recorders, say)
        )
        # The best's SavedModel export (a model of its own and its serving module), built once.
        self._export: tuple[keras.Model, tf.Module] | None = None

    def _prepare(self, params: config.Params, data_from: str | None) -> tuple:
        if data_from is None:
            return decided.prepare(self.functions.prepare_fn, params)
        try:
            prefix = checkpoints.resolve_checkpoint(
                data_from, params.model_dir, params.best_model_dir
            )
        except checkpoints.CheckpointError:
            prefix = ""  # no checkpoint yet: the data decides now
        return decided.prepare(self.functions.prepare_fn, params, prefix)

    @classmethod
    def from_functions(cls, functions: Functions, params: config.Params, **kwargs) -> Estimator:
        """The Estimator of a ``Functions`` (what ``run.py`` hands the library)."""
        named = {k: getattr(functions, k) for k in functions.__dataclass_fields__}
        return cls(
            named.pop("model_fn"),
            named.pop("loss_fn"),
            named.pop("optimizer_fn"),
            params,
            **named,
            **kwargs,
        )

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
                writers = Summaries(params.model_dir)
                try:
                    return self._train(input_fn, params, max_steps, eval_spec, writers, stop)
                finally:
                    writers.flush()
        finally:
            if not chief:
                remove_tree(params.model_dir)

    def _train(self, input_fn, params, max_steps, eval_spec, writers, stop) -> int:
        """Training in its folder (locked): start or resume, the actions, the loop, the time
        account however it ends."""
        trainer = self._start(input_fn, params)
        resumed = trainer.step if trainer.restored else None
        goodput = trainer.goodput = Goodput(params.model_dir, resumed, self.started)
        try:
            progress = Progress(
                params.progress,
                max_steps,
                trainer.plan.epoch,
                params.train_batch_size * params.accumulate_batches,  # examples an update
                trainer.step,
            )
            steps_actions, recorders, evaluate = self._actions(
                trainer, writers, progress, eval_spec, stop, params
            )
            recorders.start(Run(params, writers, progress.say, input_fn, self.strategy, stop.ask))
            if evaluate is not None:
                evaluate.catch_up(self.say)
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
        except BaseException:
            self._account(goodput, trainer.step, writers, ended=False)
            raise
        self._account(goodput, trainer.step, writers, ended=True)
        return step

    def _account(self, goodput: Goodput, step: int, writers: Summaries, ended: bool) -> None:
        """The time account of this start (``goodput.json``, TensorBoard's ``goodput/``), and
        its line."""
        goodput.close(step, ended)
        if writers.train is not None:  # always, in training
            with writers.train.as_default(step=step):
                for part, seconds in goodput.seconds.items():
                    tf.summary.scalar(f"goodput/{part}_seconds", seconds)
                tf.summary.scalar("goodput/restarts", goodput.restarts)
        self.say(goodput.line())

    def _worker_params(self) -> config.Params:
        """The parameters of a worker that is not the chief: TensorFlow has every worker save
        checkpoints (the saves take part in collectives), so each writes into a temporary
        folder of its own. It resumes from the chief's checkpoint and the run state beside
        it: decisions made from it (patience, an evaluation to make again) are the same on
        all workers, or their collectives would hang."""
        own = distribute.worker_dir(self.params.model_dir, self.strategy)
        if tf.io.gfile.exists(own):  # left by a worker that was killed
            remove_tree(own)
        tf.io.gfile.makedirs(own)
        return self.params.replace(model_dir=own, best_model_dir=os.path.join(own, "best"))

    def _start(self, input_fn: InputFn, params: config.Params) -> Trainer:
        """Restores (or creates) the training state, then records what this start used."""
        plan = self.plan
        assert plan is not None  # train() refuses to start without one
        try:
            trainer = create_trainer(
                self.functions,
                params,
                plan,
                input_fn,
                self.strategy,
                self.say,
                restore_dir=self.params.model_dir,
                data_decided=self.data_decided,
            )
        except checkpoints.NotRestorableError as error:
            raise _what_changed(error, params) from None
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
            epoch = trainer.plan.epoch(step)
            self.say(
                f"resuming from {trainer.restored} at step {step}"
                + (f" (epoch {epoch:.2f})" if epoch is not None else "")
            )
        if trainer.plan.schedule_steps != plan.train_steps:
            self.say(
                f"the learning-rate schedule keeps the length it started with "
                f"({trainer.plan.schedule_steps} steps) so that the rate stays continuous"
            )
        _save_model_summary(trainer.model, params.model_dir)
        return trainer

    def _recorders(
        self, writers: Summaries, params: config.Params, say, state: RunState, extra=()
    ) -> list:
        """The standard recorders, in order: summaries, the best checkpoint (and its
        SavedModel), metrics.jsonl, the HParams session, plots, ``extra`` (patience), the
        line; then the project's (on the chief alone, unless one runs everywhere)."""
        best = BestExporter(
            params.best_model_dir, params.best_metric, params.best_mode, state.saved.get("best")
        )
        state.best = best
        if best.best:
            say(f"best so far: {best.metric} {best.best['value']:.4g} at step {best.best['step']}")
        chief = distribute.is_chief(self.strategy)
        # The other workers' outputs are removed at the end: they export nothing.
        exports = (
            self.functions.serving_inputs is not None
            and self.functions.serving_fn is not None
            and params.best_saved_model
            and chief
        )
        recorders = [
            WriteEvalSummaries(writers),
            KeepBest(best, self._export_checkpoint if exports else None),
            AppendMetrics(params.model_dir),
            HParams(),
        ]
        if params.plots:
            recorders.append(DrawPlots(params.model_dir, say))
        project = [r for r in self.project_recorders if chief or r.everywhere]
        return [*recorders, *extra, SayEvaluation(say), *project]

    def _actions(self, trainer, writers, progress, eval_spec, stop, params) -> tuple:
        """``(actions in the order the loop calls them, their recorders, the evaluate
        action or None)``: built, nothing started."""
        plan, state, chief = trainer.plan, trainer.run_state, distribute.is_chief(self.strategy)
        evaluate_every = plan.eval_every_steps if eval_spec is not None else 0
        saver = actions.SaveCheckpoint((plan.checkpoint_every_steps, evaluate_every), trainer)
        if eval_spec is None:
            project_recorders = [r for r in self.project_recorders if chief or r.everywhere]
            recorded = project_recorders
        else:
            extra = self._patience(trainer, stop, progress, params)
            recorded = self._recorders(writers, params, progress.say, state, extra)
        recorders = Recorders(recorded, progress.say, state.delivered, state.write)
        log = actions.LogProgress(
            (plan.log_every_steps, evaluate_every), trainer, progress, writers.train, recorders
        )
        own_actions = [a for a in self.project_actions if chief or a.everywhere]
        train_actions = [log, saver, *own_actions]
        if params.profile_steps:
            first, last = params.profile_steps
            directory = os.path.join(params.model_dir, "profile")
            train_actions.append(actions.Profile(first, last, directory, trainer.step, self.say))
        if eval_spec is None:
            return [*train_actions, actions.Finish(recorders)], recorders, None
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
        return [*train_actions, evaluate], recorders, evaluate

    def _patience(self, trainer, stop, progress, params) -> list:
        """The plateau and early-stopping recorder when its rules are on (its state the run
        state's), as a list to add to the recorders."""
        patience = Patience.from_params(params)
        if not patience.active:
            return []
        patience.restore(trainer.run_state.saved.get("patience"))
        trainer.run_state.patience = patience
        trainer.state.lr_multiplier.assign(patience.multiplier)
        if patience.stopped_at is not None:
            stop.ask(
                f"{patience.stop_reason()}: nothing more to train (raise "
                "early_stopping_patience, or train into a new model_dir)"
            )
        return [ApplyPatience(patience, trainer, stop, progress.say)]

    # -- evaluation, prediction, export ----------------------------------------------------

    def evaluate_continuously(
        self,
        input_fn: InputFn | Mapping[str, InputFn],
        steps: int | None = None,
        poll_secs: float = 1.0,
    ) -> int:
        """Evaluates each new checkpoint of ``model_dir`` beside a trainer (``--mode train``),
        writing what in-loop evaluation writes: ``eval/`` summaries, ``metrics.jsonl``, plots,
        the best checkpoint and the project's recorders (whose ``run.output_dir`` is
        ``model_dir/eval``: the trainer and this evaluator never write the same file). Its
        run state (what each recorder received, the best) is ``evaluator.state.json``.

        Returns the last step evaluated (see ``library.engine.evaluator``).
        """
        if self.plan is None:
            raise ValueError("continuous evaluation needs a plan (it stops at its train_steps)")
        params = self.params
        tf.io.gfile.makedirs(params.model_dir)
        with FolderLock(params.model_dir, ".lock-evaluator", say=self.say):
            writers = Summaries(params.model_dir, train=False)
            state = RunState(run_state_file.read(os.path.join(params.model_dir, EVALUATOR)))
            state.prefix = os.path.join(params.model_dir, EVALUATOR)
            recorders = Recorders(
                self._recorders(writers, params, self.say, state),
                self.say,
                state.delivered,
                state.write,
            )
            recorders.start(Run(params, writers, self.say, None, self.strategy, role="evaluator"))
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
                recorders.finish()

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
    ) -> dict[str, Any]:
        """Evaluates a checkpoint; returns ``{"loss": ..., metric: ..., "checkpoint": prefix}``."""
        model, prefix = self.restore_model(checkpoint)
        results: dict[str, Any] = self.evaluator.evaluate(model, input_fn, steps)
        results["checkpoint"] = prefix
        return results

    def export_saved_model(self, export_dir: str, checkpoint: str = "latest") -> str:
        """Exports a SavedModel whose ``serving_default`` takes the project's serving inputs.

        Written to ``export_dir/<timestamp>`` through a temporary folder; returns the path.
        """
        export.serving_specs(self.functions, self.params)  # declared? before any work
        model, prefix = self.restore_model(checkpoint)
        module = export.serving_module(model, self.functions, self.params)
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
            module = export.serving_module(model, self.functions, self.params)
            self._export = (model, module)
        model, module = self._export
        checkpoints.restore_from(tf.train.Checkpoint(model=model), prefix)
        export.save_serving_module(module, directory)


def _what_changed(error: checkpoints.NotRestorableError, params: config.Params) -> Exception:
    """The refusal said by what changed since the checkpoints were saved (the folder's saved
    configuration), when that is known; else ``error`` as it is."""
    saved = config.configuration_in_force(error.directory)
    ignored = {"model_dir", "best_model_dir", "hyperparameter_file"}
    changed: list[str] = []
    # A model is made by its hyperparameters: their changes first, the run options' if none.
    for section in (config.HYPERPARAMETERS, config.PROJECT):
        changed = changed or [
            f"{key}: {saved[key]!r} -> {value!r}"
            for key, value in params.section(section).items()
            if key in saved and saved[key] != value and key not in ignored
        ]
    if not changed:
        return error
    return checkpoints.CheckpointError(
        f"{error.directory}: its checkpoints do not restore into this model, which its saved "
        f"configuration says changed ({'; '.join(changed)}); train into a new model_dir to "
        "start apart, or go back to those values to resume"
    )


def train_and_evaluate(estimator: Estimator, train_spec: TrainSpec, eval_spec: EvalSpec) -> int:
    """Trains, evaluating every ``plan.eval_every_steps`` and at the end; returns the step."""
    return estimator.train(train_spec.input_fn, train_spec.max_steps, eval_spec=eval_spec)


def _save_model_summary(model: keras.Model, model_dir: str) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    atomic_write_text(os.path.join(model_dir, "model_summary.txt"), "\n".join(lines) + "\n")
