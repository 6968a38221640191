"""The loop's actions: the small jobs run between chunks of steps, each at its own interval
(``schedule.is_time``): log, save a checkpoint, evaluate (handing the evaluation to the
recorders), profile."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import tensorflow as tf

from library.engine import distribute
from library.engine.schedule import Plan
from library.monitor.progress import Progress
from library.recorders.base import Action, Recorders


class LogProgress(Action):
    """Train loss (and its terms), learning rate, gradient and parameter norms, throughput and
    the share of time spent waiting for input: the log line, TensorBoard (``train/``) and the
    recorders. At the second log (the first fills the pipeline and traces the step) the input
    is checked once (``library/monitor/bottleneck.py``), and an input-bound run is told so; where
    it cannot be measured alone (several replicas, the tf.data service), a step that waited
    for input more than half the time warns instead."""

    INPUT_BOUND = 0.5
    CHECK_STEPS_LEFT = 16  # steps: a run about to end is not worth the check's few seconds

    def __init__(
        self, intervals: tuple[int, ...], trainer, progress: Progress, writer, recorders: Recorders
    ):
        self.intervals, self.trainer = intervals, trainer
        self.progress, self.writer, self.recorders = progress, writer, recorders
        self.periods, self.warned = 0, False

    def __call__(self, step: int) -> None:
        state = self.trainer.state
        values = {
            "loss": float(state.log_loss.result()),
            **{f"loss/{name}": value for name, value in state.log_terms().items()},
            "learning_rate": float(state.learning_rate.numpy()),
            "grad_norm": float(state.grad_norm.numpy()),
            "param_norm": float(tf.linalg.global_norm(self.trainer.model.trainable_variables)),
            "nonfinite_steps": int(state.nonfinite_total.numpy()),
        }
        waited = float(state.input_wait.numpy())
        state.log_loss.reset_state()
        state.input_wait.assign(0.0)
        if self.trainer.goodput is not None:
            self.trainer.goodput.waited(waited)
            self.trainer.goodput.beat(step)
        values.update(self.progress.log(step, values, waited))
        with self.writer.as_default(step=step):
            for name, value in values.items():
                if not (isinstance(value, float) and math.isnan(value)):
                    tf.summary.scalar(name, value)
        self.recorders.on_train_log(step, values)
        self.periods += 1
        self._check_input(step, values)

    def _check_input(self, step: int, values: dict) -> None:
        """At the second log (the first filled the pipeline and traced the step) the input
        check, once; where it cannot run alone, a warning when the step waited for input
        more than half the time."""
        enough_left = self.progress.total - step >= self.CHECK_STEPS_LEFT
        if self.periods == 2 and self.trainer.measure_input is not None and enough_left:
            self.warned = True
            self.progress.pause()
            try:
                verdict = self.trainer.measure_input()
            except Exception as error:  # a diagnostic: it must never end the run
                self.progress.say(f"note: input check skipped ({type(error).__name__}: {error})")
                return
            finally:
                self.progress.resume()
            with self.writer.as_default(step=step):  # the figures, in TensorBoard's train/
                rate = verdict.pipeline_batches_per_sec
                tf.summary.scalar("input_check/pipeline_batches_per_sec", rate)
                tf.summary.scalar("input_check/step_per_sec", verdict.step_per_sec)
            line = verdict.line(values["steps_per_sec"])
            if line:
                self.progress.say(line)
        elif self.periods > 1 and values["input_wait"] > self.INPUT_BOUND and not self.warned:
            self.warned = True
            self.progress.say(
                f"warning: the run is input-bound: the step waited for input "
                f"{values['input_wait']:.0%} of the time up to step {step}; try a cheaper "
                "input_fn (smaller records, decoding less), more parallel reads "
                "(interleave_cycle_length), caching, or the tf.data service"
            )


class SaveCheckpoint(Action):
    """Saves a checkpoint (model, optimizer, step state, maybe the input position)."""

    def __init__(self, intervals: tuple[int, ...], trainer):
        self.intervals, self.trainer = intervals, trainer
        self.last: str | None = None  # the newest checkpoint of this run
        self.recorded: tuple = (None, {}, 0.0)  # its train loss, loss terms and rate

    def __call__(self, step: int) -> None:
        self.last = self.trainer.save()
        self.recorded = self.trainer.state.recorded()
        self.trainer.state.reset_checkpoint_loss()  # the next checkpoint's period


class Profile(Action):
    """A TensorBoard profile of the training steps after ``start`` up to ``stop``
    (``profile_steps``), written to ``directory`` (TensorBoard's Profile tab)."""

    def __init__(self, start: int, stop: int, directory: str, step: int, say: Callable):
        self.start, self.stop, self.directory, self.say = start, stop, directory, say
        self.intervals = tuple(n for n in (start, stop) if n > 0)
        self.running = False
        self(step)  # a run that starts (or resumes) inside the range profiles at once

    def __call__(self, step: int) -> None:
        if not self.running and self.start <= step < self.stop:
            tf.profiler.experimental.start(self.directory)
            self.running = True
            self.say(f"profiling steps {step + 1}-{self.stop} into {self.directory}")
        elif self.running and step >= self.stop:
            self.finish()

    def finish(self) -> None:
        if self.running:
            tf.profiler.experimental.stop()
            self.running = False
            self.say(f"profile written to {self.directory} (tensorboard --logdir {self.directory})")


class Evaluate(Action):
    """Evaluates the live model on the checkpoint just saved and hands the result on."""

    def __init__(
        self,
        every: int,
        trainer,
        saver: SaveCheckpoint,
        evaluator,
        input_fn: Callable,
        max_batches: int | None,
        recorders: Recorders,
        progress: Progress,
    ):
        self.intervals, self.trainer, self.saver, self.evaluator = (
            (every,),
            trainer,
            saver,
            evaluator,
        )
        self.input_fn, self.max_batches = input_fn, max_batches
        self.recorders, self.progress = recorders, progress

    def __call__(self, step: int) -> None:
        self.progress.pause()  # evaluation time is not training throughput
        started = time.perf_counter()
        # SaveCheckpoint ran just before: an evaluation always follows a save at its step.
        model = self.trainer.evaluated  # the moving average of the weights, if any
        self.evaluator.evaluate_sets(model, self.input_fn, self.max_batches)
        epoch, checkpoint = self.trainer.plan.epoch(step), self.saver.last or ""
        evaluation = self.evaluator.evaluation(step, epoch, model, checkpoint, self.saver.recorded)
        # Given again after a kill, it reaches recorders after the one that keeps the best
        # (and says whether it is one): the run state knows.
        best = self.trainer.run_state.best
        evaluation.is_best = bool(best and best.best and best.best["step"] == step)
        self.recorders.on_evaluation(evaluation)
        if self.trainer.goodput is not None:
            self.trainer.goodput.add("evaluations", time.perf_counter() - started)
        self.progress.resume()

    def catch_up(self, say: Callable[[str], None]) -> None:
        """Evaluates the checkpoint the run resumes from again when a recorder has not
        received its evaluation (the run stopped between saving it and handing the
        evaluation to every recorder, as the run state beside it says): those recorders
        get it, the others nothing twice. Every worker agrees, or their collectives hang."""
        trainer, step = self.trainer, self.trainer.step
        due = step % self.intervals[0] == 0 or step >= trainer.plan.train_steps
        pending = bool(trainer.restored) and due and self.recorders.pending(step)
        if not distribute.agreed(trainer.strategy, pending):
            return
        say(f"step {step} was saved but not every recorder got its evaluation: evaluating")
        self.saver.last = trainer.restored
        self.saver.recorded = trainer.restored_record
        self(step)

    def finish(self) -> None:
        self.recorders.finish()


class Finish(Action):
    """Ends the recorders of a run without evaluations (``--mode train``)."""

    def __init__(self, recorders: Recorders):
        self.recorders = recorders

    def __call__(self, step: int) -> None:
        pass

    def finish(self) -> None:
        self.recorders.finish()


def describe(plan: Plan) -> str:
    per_epoch = f"{plan.steps_per_epoch} steps per epoch; " if plan.steps_per_epoch else ""
    return (
        f"{per_epoch}training to step {plan.train_steps}, "
        f"evaluating every {plan.eval_every_steps} steps"
    )
