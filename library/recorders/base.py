"""What the loop and the evaluator hand on, and to whom: ``Action`` (something done every N
steps), ``Recorder`` (something done with each training log and each evaluation), and what
they receive (``Run``, ``Evaluation``).

A project adds its own through ``callbacks_fn(params)`` (``library/contract.py``), as Keras
callbacks and Lightning loggers are added, with no library edit.
"""

from __future__ import annotations

import concurrent.futures
import os
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from library.config import Params

if TYPE_CHECKING:
    import tensorflow as tf

    from library.recorders.summaries import Summaries


class Action:
    """Runs at every multiple of each of its ``intervals`` (in steps) and at the final step.

    In a multi-worker run a project's action runs on the chief alone, unless it sets
    ``everywhere = True`` (it then must do the same on every worker).
    """

    intervals: tuple[int, ...] = ()
    everywhere: bool = False

    def __call__(self, step: int) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once when training stops (normally or not): wait for background work."""


@dataclass(frozen=True)
class Run:
    """What a recorder may use: the configuration, the folders, the TensorBoard writers, the
    training input (None in a separate evaluator), a way to end training at the next chunk
    boundary (``request_stop(reason)``; None in a separate evaluator), and whether this
    process trains (``role`` ``trainer``) or evaluates beside a trainer (``evaluator``)."""

    params: Params
    writers: Summaries
    say: Callable[[str], None]
    train_input_fn: Callable[..., tf.data.Dataset] | None = None
    strategy: tf.distribute.Strategy | None = None
    request_stop: Callable[[str], None] | None = None
    role: str = "trainer"

    @property
    def model_dir(self) -> str:
        return self.params.model_dir

    @property
    def output_dir(self) -> str:
        """Where a recorder writes its files: ``model_dir`` for the trainer,
        ``model_dir/eval`` for a separate evaluator (the two never write the same file)."""
        if self.role == "evaluator":
            return os.path.join(self.params.model_dir, "eval")
        return self.params.model_dir

    @property
    def best_model_dir(self) -> str:
        return self.params.best_model_dir


@dataclass
class Evaluation:
    """One evaluation of the weights at ``step``, as the recorders receive it."""

    step: int
    epoch: float | None  # None when the records of an epoch are not counted
    results: dict[str, float]  # loss, loss/<term>, each metric of metrics_fn
    train_loss: float | None  # mean training loss since the previous checkpoint
    learning_rate: float | None  # the rate in force for the steps before this evaluation
    model: keras.Model
    checkpoint: str  # the checkpoint of these weights
    train_terms: dict[str, float] = field(default_factory=dict)  # each loss term's, likewise
    first_batch: tuple[Any, Any] | None = None  # (features, labels) of the first batch
    first_outputs: Any = None  # the model's outputs on it, from the evaluation pass
    activations: dict[str, np.ndarray] = field(default_factory=dict)  # each block's output
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # recorders' own metrics
    is_best: bool = field(default=False)  # set by KeepBest, which runs first

    def when(self) -> str:
        """``step 40 (epoch 2.00)``, or ``step 40`` when epochs are not counted."""
        return f"step {self.step}" + (
            f" (epoch {self.epoch:.2f})" if self.epoch is not None else ""
        )


class Recorder:
    """Receives what a run records; override what you need.

    ``start`` comes once before the first step (or evaluation), ``on_train_log`` with the
    values of each training log line (loss, its terms, learning rate, norms, throughput),
    ``on_evaluation`` with each evaluation, ``finish`` at the end however the run ends.
    ``evaluation_metrics`` may ask for metrics of its own, accumulated over the evaluation
    pass and handed over in ``evaluation.arrays`` (e.g. a confusion matrix).

    Each evaluation reaches a recorder once (keyed by its step), across any number of kills
    of the run: one missed is given at the restart, never one twice. A recorder writes its
    files in ``run.output_dir``.

    A recorder that raises is reported at once, naming itself, and left out from then on: it
    never changes a run's result. A recorder the run cannot do without (the best checkpoint,
    metrics.jsonl) sets ``essential = True``: its failure stops the run. In a multi-worker
    run a project's recorder runs on the chief alone, unless it sets ``everywhere = True``.
    """

    essential: bool = False
    everywhere: bool = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def start(self, run: Run) -> None:
        """Once, before anything is recorded."""

    def on_train_log(self, step: int, values: Mapping[str, float]) -> None:
        """The values of the training log line at ``step``."""

    def on_evaluation(self, evaluation: Evaluation) -> None:
        """One evaluation (in training, or of a checkpoint in continuous evaluation)."""

    def evaluation_metrics(self, params: Params) -> dict[str, keras.metrics.Metric]:
        """Metrics this recorder needs accumulated over each evaluation (any shape)."""
        return {}

    def finish(self) -> None:
        """Once, at the end: wait for background work."""


class Recorders:
    """Hands each event to every recorder in order; a non-essential one that fails is
    reported once (``say``) and left out from then on.

    Each evaluation reaches each recorder once, keyed by its step: ``delivered`` (the run
    state, ``library/engine/run_state.py``) says which step each recorder received last,
    and ``persist`` saves it after each delivery, so a run killed between two recorders
    gives the second what it missed when it resumes, and the first nothing twice.
    """

    def __init__(
        self,
        recorders: Iterable[Recorder],
        say: Callable[[str], None],
        delivered: dict[str, int] | None = None,
        persist: Callable[[], None] | None = None,
    ) -> None:
        self.recorders, self.say = list(recorders), say
        self.failed: set[int] = set()
        self.keys = _keys(self.recorders)
        self.delivered = {} if delivered is None else delivered
        # A recorder new to the run starts where the others are.
        start = max(self.delivered.values(), default=-1)
        for key in self.keys:
            self.delivered.setdefault(key, start)
        self.persist = persist

    def _call(self, index: int, recorder: Recorder, method: str, *args: Any) -> None:
        try:
            getattr(recorder, method)(*args)
        except Exception as error:
            if recorder.essential:
                raise
            self.failed.add(index)
            where = traceback.extract_tb(error.__traceback__)[-1]
            self.say(
                f"warning: recorder {recorder.name} failed in {method} "
                f"({type(error).__name__}: {error}; {where.filename}:{where.lineno}); "
                "it records nothing more in this run"
            )

    def _each(self, method: str, *args: Any) -> None:
        for index, recorder in enumerate(self.recorders):
            if index not in self.failed:
                self._call(index, recorder, method, *args)

    def start(self, run: Run) -> None:
        self._each("start", run)

    def on_train_log(self, step: int, values: Mapping[str, float]) -> None:
        self._each("on_train_log", step, values)

    def on_evaluation(self, evaluation: Evaluation) -> None:
        """Gives ``evaluation`` to each recorder that has not received its step."""
        for index, recorder in enumerate(self.recorders):
            key = self.keys[index]
            if self.delivered[key] >= evaluation.step:
                continue
            if index not in self.failed:
                self._call(index, recorder, "on_evaluation", evaluation)
            self.delivered[key] = evaluation.step  # received, or failed on it: done
            if self.persist is not None:
                self.persist()

    def pending(self, step: int) -> bool:
        """Whether a recorder has not received the evaluation of ``step``."""
        return any(self.delivered[key] < step for key in self.keys)

    def finish(self) -> None:
        self._each("finish")

    def evaluation_metrics(self, params: Params) -> dict[str, keras.metrics.Metric]:
        metrics = {}
        for recorder in self.recorders:
            metrics.update(recorder.evaluation_metrics(params))
        return metrics


def _keys(recorders: Iterable[Recorder]) -> list[str]:
    """A name per recorder, the same from one start of a run to the next: its class name,
    numbered when several recorders share it."""
    keys: list[str] = []
    seen: dict[str, int] = {}
    for recorder in recorders:
        name = recorder.name
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


class Background:
    """One worker thread for work the training step need not wait for.

    With ``coalesce``, work submitted while the worker is busy replaces what was waiting
    (only the newest matters, e.g. redrawing plots). ``wait`` returns when all is done and
    raises what the work raised. With ``report``, a failure is instead said at once, from the
    worker, naming ``name`` (work that must not change the run's result: figures).
    """

    def __init__(
        self, name: str, coalesce: bool = False, report: Callable[[str], None] | None = None
    ) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self.name, self.coalesce, self.report = name, coalesce, report
        self.futures: list[concurrent.futures.Future] = []

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        if self.coalesce:
            waiting = [f for f in self.futures if not f.running() and not f.done()]
            for future in waiting:
                future.cancel()
        self.futures = [f for f in self.futures if not f.done()]
        if self.report is not None:
            self.futures.append(self.executor.submit(self._guarded, self.report, fn, *args))
        else:
            self.futures.append(self.executor.submit(fn, *args))

    def _guarded(
        self, report: Callable[[str], None], fn: Callable[..., object], *args: Any
    ) -> None:
        try:
            fn(*args)
        except Exception as error:
            report(f"warning: {self.name} failed ({type(error).__name__}: {error})")

    def wait(self) -> None:
        futures, self.futures = self.futures, []
        for future in futures:
            if not future.cancelled():
                future.result()
