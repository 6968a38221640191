"""The outer loop: run chunks of steps; between chunks, call the actions whose time has come.

A chunk never runs past a step at which some action is due (``schedule.next_boundary``), and
is at most ``steps_per_execution`` steps long (one graph call). Divergence is checked after
each chunk from the one value the train loop returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from library import schedule
from library.actions import Action
from library.progress import Progress
from library.trainer import Trainer


class DivergedError(Exception):
    """The loss stayed NaN/Inf for ``max_nonfinite_steps`` steps in a row."""


def run_loop(
    trainer: Trainer,
    max_steps: int,
    actions: Sequence[Action],
    progress: Progress,
    steps_per_execution: int = 1,
    max_nonfinite_steps: int = 5,
    say: Callable[[str], None] = print,
) -> int:
    """Trains from the trainer's step to ``max_steps``, calling ``actions`` when due.

    Every action runs at the final step; each action's ``finish`` runs however the loop ends.

    Returns:
        The step reached.

    Raises:
        DivergedError: ``max_nonfinite_steps`` non-finite steps in a row.
    """
    step = trainer.step
    if step >= max_steps:
        say(f"already trained to step {step} (max {max_steps}): nothing to do")
        return step
    intervals = [every for action in actions for every in action.intervals]
    try:
        while step < max_steps:
            boundary = schedule.next_boundary(step, intervals, max_steps)
            chunk = min(steps_per_execution, boundary - step)
            in_a_row = trainer.train(chunk)
            previous, step = step, step + chunk
            if in_a_row >= max_nonfinite_steps:
                raise DivergedError(_divergence(trainer, step, in_a_row))
            progress.advance(step)
            for action in actions:
                if any(schedule.is_time(step, n, previous, max_steps) for n in action.intervals):
                    action(step)
        progress.finish()
    finally:
        for action in actions:
            action.finish()
    return step


def _divergence(trainer: Trainer, step: int, in_a_row: int) -> str:
    last_good = trainer.manager.latest_checkpoint or "none yet"
    return (
        f"loss or gradient was NaN/Inf for {in_a_row} steps in a row at step {step} "
        f"(weights kept from before); last good checkpoint: {last_good}; "
        "lower the learning_rate or check the input data"
    )
