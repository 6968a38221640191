"""Actions: the small jobs the loop runs between chunks of steps, each at its own interval.

Train actions (``LogProgress``, ``SaveCheckpoint``, ``Evaluate``) are called by the loop when
``schedule.is_time`` says so. An evaluation is then handed to the evaluation recorders
(``WriteEvalSummaries``, ``AppendMetrics``, ``DrawPlots``, ``KeepBest``, ``SayEvaluation``),
the same ones a separate evaluator process uses. To add your own, subclass ``Action`` (or
write a recorder: a callable taking an ``Evaluation``) and pass it to the Estimator.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from library import checkpoints, plots, summaries
from library.progress import Progress
from library.schedule import Plan

CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS_PNG = "predictions.png"


class Action:
    """Runs at every multiple of each of its ``intervals`` (in steps) and at the final step."""

    intervals: tuple[int, ...] = ()

    def __call__(self, step: int) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once when training stops (normally or not): wait for background work."""


@dataclass
class Evaluation:
    """One evaluation of the weights at ``step``, as the recorders receive it."""

    step: int
    epoch: float
    results: dict[str, float]
    train_loss: float | None  # mean training loss since the previous checkpoint
    learning_rate: float | None  # the rate in force for the steps before this evaluation
    model: keras.Model
    checkpoint: str  # the checkpoint of these weights
    confusion: np.ndarray | None = None  # true x predicted class counts, for a classifier
    first_batch: tuple | None = None  # (features, labels) of the evaluation's first batch
    first_outputs: object = None  # the model's outputs on it, from the evaluation pass
    activations: dict = field(default_factory=dict)  # each encoder block's output on it
    is_best: bool = field(default=False)  # set by KeepBest


def checkpoint_values(state) -> tuple[float | None, float]:
    """``(train loss, learning rate)`` as a step state holds them: the mean training loss since
    the previous checkpoint (None if no step counted) and the rate of the last step."""
    return state.checkpoint_loss(), float(state.learning_rate.numpy())


# -- train actions ----------------------------------------------------------------------------


class LogProgress(Action):
    """Train loss, learning rate, gradient and parameter norms, throughput and the share of
    time spent waiting for input: log line and TensorBoard. Warns once when the run is
    input-bound (the first period, which fills the pipeline and traces the step, aside)."""

    INPUT_BOUND = 0.5

    def __init__(self, intervals: tuple[int, ...], trainer, progress: Progress, writer):
        self.intervals, self.trainer = intervals, trainer
        self.progress, self.writer = progress, writer
        self.periods, self.warned = 0, False

    def __call__(self, step: int) -> None:
        state = self.trainer.state
        values = {
            "loss": float(state.log_loss.result()),
            "learning_rate": float(state.learning_rate.numpy()),
            "grad_norm": float(state.grad_norm.numpy()),
            "param_norm": float(tf.linalg.global_norm(self.trainer.model.trainable_variables)),
            "nonfinite_steps": int(state.nonfinite_total.numpy()),
        }
        waited = float(state.input_wait.numpy())
        state.log_loss.reset_state()
        state.input_wait.assign(0.0)
        values.update(self.progress.log(step, values, waited))
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)
        self.periods += 1
        if self.periods > 1 and values["input_wait"] > self.INPUT_BOUND and not self.warned:
            self.warned = True
            self.progress.say(
                f"warning: the run is input-bound: the step waited for input "
                f"{values['input_wait']:.0%} of the time up to step {step}; try a smaller "
                "--max_edge when converting, a larger interleave_cycle_length, caching "
                "decoded images, or the tf.data service"
            )


class SaveCheckpoint(Action):
    """Saves a checkpoint (model, optimizer, step state, maybe the input position)."""

    def __init__(self, intervals: tuple[int, ...], trainer):
        self.intervals, self.trainer = intervals, trainer
        self.last: str | None = None  # the newest checkpoint of this run
        self.recorded: tuple[float | None, float] = (None, 0.0)  # its train loss and rate

    def __call__(self, step: int) -> None:
        self.last = self.trainer.save()
        self.recorded = checkpoint_values(self.trainer.state)
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
        recorders: Sequence[Callable[[Evaluation], None]],
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
        # SaveCheckpoint ran just before: an evaluation always follows a save at its step.
        train_loss, learning_rate = self.saver.recorded
        results = self.evaluator.evaluate(self.trainer.model, self.input_fn, self.max_batches)
        evaluation = Evaluation(
            step,
            self.trainer.plan.epoch(step),
            results,
            train_loss,
            learning_rate,
            self.trainer.model,
            self.saver.last or "",
            self.evaluator.confusion,
            self.evaluator.first_batch,
            self.evaluator.first_outputs,
            self.evaluator.activations,
        )
        for record in self.recorders:
            record(evaluation)
        self.progress.resume()

    def catch_up(self, say: Callable[[str], None]) -> None:
        """Evaluates the checkpoint the run resumes from if its evaluation was lost (the run
        stopped between saving it and evaluating it), so that metrics.jsonl, the best
        checkpoint and what follows from them see every evaluation."""
        trainer, step = self.trainer, self.trainer.step
        due = step % self.intervals[0] == 0 or step >= trainer.plan.train_steps
        if not trainer.restored or not due:
            return
        if any(r.get("step") == step for r in summaries.read_metrics(trainer.manager.directory)):
            return
        say(f"step {step} was saved but never evaluated (the run stopped in between): evaluating")
        self.saver.last = trainer.restored
        self.saver.recorded = checkpoint_values(trainer.state)
        self(step)

    def finish(self) -> None:
        for record in self.recorders:
            getattr(record, "finish", lambda: None)()


# -- evaluation recorders -------------------------------------------------------------------


class Background:
    """One worker thread for work the training step need not wait for.

    With ``coalesce``, work submitted while the worker is busy replaces what was waiting
    (only the newest matters, e.g. redrawing plots). ``wait`` returns when all is done and
    raises what the work raised.
    """

    def __init__(self, name: str, coalesce: bool = False):
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self.coalesce = coalesce
        self.futures: list[concurrent.futures.Future] = []

    def submit(self, fn: Callable, *args) -> None:
        if self.coalesce:
            waiting = [f for f in self.futures if not f.running() and not f.done()]
            for future in waiting:
                future.cancel()
        self.futures = [f for f in self.futures if not f.done()]
        self.futures.append(self.executor.submit(fn, *args))

    def wait(self) -> None:
        futures, self.futures = self.futures, []
        for future in futures:
            if not future.cancelled():
                future.result()


class WriteEvalSummaries:
    """Evaluation scalars, weight histograms, first-layer filters and the activations of each
    encoder block (layers named ``block...``) on the evaluation's first batch, in ``eval/``.

    The activations come from the evaluation pass; weights are copied to the host at once.
    Both are written in the background: histograms cost tens of milliseconds that the
    training step need not wait for.
    """

    def __init__(self, writers: summaries.Summaries):
        self.writers = writers
        self.background = Background("summaries")

    def __call__(self, evaluation: Evaluation) -> None:
        self.writers.scalars(self.writers.eval, evaluation.results, evaluation.step)
        weights = summaries.snapshot_weights(evaluation.model)
        step = evaluation.step
        self.background.submit(summaries.write_weights, self.writers.eval, weights, step)
        if evaluation.activations:
            self.background.submit(
                summaries.write_activations, self.writers.eval, evaluation.activations, step
            )

    def finish(self) -> None:
        self.background.wait()
        self.writers.flush()


class AppendMetrics:
    """One line per evaluation in ``metrics.jsonl`` (the record the plots are drawn from)."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir

    def __call__(self, evaluation: Evaluation) -> None:
        record = {
            "step": evaluation.step,
            "epoch": round(evaluation.epoch, 4),
            "train_loss": evaluation.train_loss,
        }
        record.update({f"eval_{k}": v for k, v in evaluation.results.items()})
        record["learning_rate"] = evaluation.learning_rate
        summaries.append_metrics(self.model_dir, record)


class DrawPlots:
    """Redraws the PNG plots from ``metrics.jsonl`` in the background (matplotlib is slow);
    a drawing asked for while one runs is made once that one ends."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.background = Background("plots", coalesce=True)

    def __call__(self, evaluation: Evaluation) -> None:
        self.background.submit(self._draw)

    def _draw(self) -> None:
        records = summaries.read_metrics(self.model_dir)
        plots.plot_metrics(records, os.path.join(self.model_dir, "plots"))

    def finish(self) -> None:
        self.background.wait()


class KeepBest:
    """Saves the evaluated weights as the best checkpoint when they beat the best so far.

    The best's SavedModel is written in the background from the best checkpoint (seconds of
    tracing the training step need not wait for); a new best arriving meanwhile is exported
    once that export ends. ``finish`` waits for it, and writes the SavedModel when the one in
    the folder is older than the best (a run killed before its export).
    """

    def __init__(
        self,
        exporter: checkpoints.BestExporter,
        export_fn: Callable[[str, str], None] | None = None,
    ):
        self.exporter, self.export_fn = exporter, export_fn
        self.background = Background("export", coalesce=True)

    def __call__(self, evaluation: Evaluation) -> None:
        evaluation.is_best = self.exporter.maybe_export(
            evaluation.results,
            evaluation.step,
            evaluation.epoch,
            evaluation.model,
            evaluation.checkpoint,
        )
        if evaluation.is_best and self.export_fn is not None:
            self.background.submit(self.exporter.export_saved_model, self.export_fn)

    def finish(self) -> None:
        self.background.wait()
        if self.export_fn is not None:
            self.exporter.export_saved_model(self.export_fn)


class DrawBestFigures:
    """For a classifier, when the best changes: the confusion matrix of its evaluation and
    its predictions on the evaluation's first batch, as PNGs in the best folder (drawn in the
    background, from the outputs of the evaluation pass)."""

    def __init__(self, directory: str, predictions_fn: Callable, class_names=None):
        self.directory, self.predictions_fn = directory, predictions_fn
        self.class_names = class_names
        self.background = Background("figures", coalesce=True)

    def __call__(self, evaluation: Evaluation) -> None:
        if not evaluation.is_best or evaluation.confusion is None:
            return
        title = f"step {evaluation.step} (epoch {evaluation.epoch:.2f})"
        self.background.submit(
            plots.plot_confusion_matrix,
            evaluation.confusion,
            self.class_names,
            os.path.join(self.directory, CONFUSION_PNG),
            f"Best checkpoint, {title}:",
        )
        if evaluation.first_batch is None or evaluation.first_outputs is None:
            return
        features, labels = evaluation.first_batch
        images = features["image"] if isinstance(features, dict) else features
        outputs = evaluation.first_outputs
        predictions = {k: np.asarray(v) for k, v in self.predictions_fn(outputs).items()}
        self.background.submit(
            plots.plot_sample_predictions,
            np.asarray(images)[:24],
            np.asarray(labels)[:24],
            predictions["class"][:24],
            predictions.get("probability", np.ones(len(predictions["class"])))[:24],
            self.class_names,
            os.path.join(self.directory, PREDICTIONS_PNG),
            f"Best checkpoint, {title}: true class (-> predicted when wrong), probability",
        )

    def finish(self) -> None:
        self.background.wait()


class ApplyPatience:
    """Plateau and early stopping after each evaluation (``library/patience.py``): lowers the
    trainer's learning-rate multiplier, or asks the loop to stop."""

    def __init__(self, patience, trainer, stop, say: Callable[[str], None]):
        self.patience, self.trainer, self.stop, self.say = patience, trainer, stop, say

    def __call__(self, evaluation: Evaluation) -> None:
        rate = evaluation.learning_rate
        for event in self.patience.update(evaluation.step, evaluation.results["loss"], rate):
            self.say(event)
        self.trainer.state.lr_multiplier.assign(self.patience.multiplier)
        if self.patience.stopped_at is not None:
            self.stop.ask(self.patience.stop_reason())


class SayEvaluation:
    """The evaluation's one line (after KeepBest, which marks a new best)."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say

    def __call__(self, evaluation: Evaluation) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in evaluation.results.items())
        self.say(
            f"eval at step {evaluation.step} (epoch {evaluation.epoch:.2f}): {shown}"
            + ("  [new best]" if evaluation.is_best else "")
        )


def evaluation_recorders(
    model_dir: str,
    writers: summaries.Summaries,
    best: checkpoints.BestExporter,
    export_fn: Callable[[str, str], None] | None,
    say: Callable[[str], None],
    predictions_fn: Callable | None = None,
    class_names=None,
    draw_plots: bool = True,
) -> list:
    """The standard recorders, in order: summaries, best (and its figures), metrics.jsonl,
    plots, the line; ``draw_plots`` False leaves out the matplotlib figures.

    The metrics.jsonl row comes after the best: a run killed in between evaluates that step
    again when it resumes (the row is what says an evaluation happened), so the best never
    misses an evaluation.
    """
    recorders = [WriteEvalSummaries(writers), KeepBest(best, export_fn)]
    if predictions_fn is not None and draw_plots:
        recorders.append(DrawBestFigures(best.directory, predictions_fn, class_names))
    recorders.append(AppendMetrics(model_dir))
    if draw_plots:
        recorders.append(DrawPlots(model_dir))
    return [*recorders, SayEvaluation(say)]


def describe(plan: Plan) -> str:
    return (
        f"{plan.steps_per_epoch} steps per epoch; training to step {plan.train_steps}, "
        f"evaluating every {plan.eval_every_steps} steps"
    )
