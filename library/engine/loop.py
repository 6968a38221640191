"""The outer loop: run chunks of steps; between chunks, call the actions whose time has come.

A chunk never runs past a step at which some action is due (``schedule.next_boundary``), and
is at most ``steps_per_execution`` steps long (one graph call). Divergence is checked after
each chunk from the one value the train loop returns. SIGTERM (what schedulers and
preemptible VMs send before SIGKILL) and SIGINT (Ctrl-C) end the loop at the next chunk
boundary with a checkpoint at the step reached; an action can end it too (early stopping).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence

from library.base.errors import DivergedError, Interrupted
from library.engine import distribute, schedule
from library.engine.trainer import Trainer
from library.monitor.progress import Progress
from library.recorders.base import Action


class StopRequest:
    """Asks the loop to stop at the next chunk boundary: by a signal, or by an action.

    Used as a context manager, it turns SIGTERM and the first SIGINT into requests (a second
    Ctrl-C interrupts at once). Outside the main thread no handler can be installed and
    signals keep their default behaviour.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_name: str | None = None  # set by a signal
        self.elsewhere = False  # the signal came to another worker
        self.reason: str | None = None  # set by an action, e.g. early stopping
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None or self.reason is not None

    def ask(self, reason: str) -> None:
        self.reason = reason

    def _handle(self, number, frame) -> None:
        self.signal_name = signal.Signals(number).name
        if number == signal.SIGINT:  # a second Ctrl-C: stop now, without saving
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


def run_loop(
    trainer: Trainer,
    max_steps: int,
    actions: Sequence[Action],
    progress: Progress,
    steps_per_execution: int = 1,
    max_nonfinite_steps: int = 5,
    stop: StopRequest | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Trains from the trainer's step to ``max_steps``, calling ``actions`` when due.

    Every action runs at the final step; each action's ``finish`` runs however the loop ends.

    In a multi-worker run every worker agrees at each chunk boundary whether to stop (a
    signal to any one of them stops them all at the same step, with one checkpoint), as
    they agree on a non-finite step. A failure in training (a data error, an exception of a
    project function) saves a checkpoint at the last good step before it is raised, when the
    process is alone (a save is a collective every worker must join).

    Returns:
        The step reached (``max_steps``, or less when an action asked to stop).

    Raises:
        DivergedError: ``max_nonfinite_steps`` non-finite steps in a row.
        Interrupted: a stop signal came (to this worker or another); a checkpoint was saved
            at the step reached.
    """
    stop = stop or StopRequest()
    step = trainer.step
    intervals = [every for action in actions for every in action.intervals]
    together = distribute.task(trainer.strategy)[0] is not None
    try:
        if step >= max_steps:
            say(f"already trained to step {step} (max {max_steps}): nothing to do")
        while step < max_steps and not _agreed_stop(stop, trainer, together):
            boundary = schedule.next_boundary(step, intervals, max_steps)
            chunk = min(steps_per_execution, boundary - step)
            try:
                in_a_row = trainer.train(chunk)
            except (Exception, KeyboardInterrupt):
                if not together:
                    _save_before_failing(trainer, say)
                raise
            previous, step = step, step + chunk
            if in_a_row >= max_nonfinite_steps:
                raise DivergedError(_divergence(trainer, step, in_a_row))
            progress.advance(step)
            for action in actions:
                if any(schedule.is_time(step, n, previous, max_steps) for n in action.intervals):
                    action(step)
        progress.finish()
        if stop.signal_name is not None:
            saved = trainer.last_saved if trainer.saved_step == step else None
            raise Interrupted(stop.signal_name, step, saved or trainer.save(), stop.elsewhere)
        if stop.reason is not None:
            progress.say(stop.reason)
    finally:
        for action in actions:
            action.finish()
    return step


def _agreed_stop(stop: StopRequest, trainer: Trainer, together: bool) -> bool:
    """Whether to stop now; with other workers, what all of them say (one all-reduce a
    chunk): a signal to another worker stops this one too, as a SIGTERM from elsewhere."""
    if not together:
        return stop.requested
    stopping = distribute.agreed(trainer.strategy, stop.signal_name is not None)
    if stopping and stop.signal_name is None:
        stop.signal_name, stop.elsewhere = "SIGTERM", True
    return stopping or stop.reason is not None


def _save_before_failing(trainer: Trainer, say: Callable[[str], None]) -> None:
    """Saves the step reached before a failure (Lightning's on-exception checkpoint), and
    says so; a save that fails too is said, and the first failure is the one raised."""
    step = trainer.step
    if step == trainer.saved_step:
        say(f"training failed at step {step}; its checkpoint is {trainer.last_saved}")
        return
    try:
        saved = trainer.save()
    except Exception as error:  # the failure itself is what the user must see
        say(f"training failed at step {step}; no checkpoint could be saved ({error})")
        return
    say(
        f"training failed at step {step}; checkpoint saved there ({saved}): once the cause "
        "is fixed, the same command resumes from it"
    )


def _divergence(trainer: Trainer, step: int, in_a_row: int) -> str:
    last_good = trainer.manager.latest_checkpoint or "none yet"
    return (
        f"loss or gradient was NaN/Inf for {in_a_row} steps in a row at step {step} "
        f"(weights kept from before); last good checkpoint: {last_good}; "
        "lower the learning rate or check the input data"
    )
