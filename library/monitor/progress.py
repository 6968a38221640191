"""What a person watching a run sees: a progress bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import keras


class Progress:
    """Draws the bar or prints one line per logging period, with throughput and ETA.

    Throughput counts training time only: the time spent in evaluations and other actions
    between two log lines is subtracted (``pause``/``resume`` around them).
    """

    def __init__(
        self,
        mode: str,
        total: int,
        epoch: Callable[[int], float | None],
        batch_size: int,
        start_step: int,
    ):
        interactive = mode == "bar" or (mode == "auto" and sys.stdout.isatty())
        self.bar = (
            keras.utils.Progbar(total, stateful_metrics=["loss", "lr"]) if interactive else None
        )
        self.total, self.epoch, self.batch_size = total, epoch, batch_size
        self.last_time = time.perf_counter()
        self.last_step = start_step
        self.paused_at: float | None = None

    def advance(self, step: int) -> None:
        if self.bar:
            self.bar.update(step)

    def pause(self) -> None:
        """Stops the clock: what follows (an evaluation, a save) is not training time."""
        if self.paused_at is None:
            self.paused_at = time.perf_counter()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.last_time += time.perf_counter() - self.paused_at
            self.paused_at = None

    def say(self, line: str) -> None:
        """A line that must not be glued to the bar: the bar is redrawn below it."""
        if self.bar:
            sys.stdout.write("\n")
        print(line, flush=True)

    def log(self, step: int, values: dict, input_wait_seconds: float = 0.0) -> dict:
        """Prints the period's line (or updates the bar); returns the throughput figures and
        the share of the period the step waited for input."""
        now = time.perf_counter()
        seconds = max(now - self.last_time, 1e-9)
        rate = (step - self.last_step) / seconds
        self.last_time, self.last_step = now, step
        figures = {
            "steps_per_sec": rate,
            "examples_per_sec": rate * self.batch_size,
            "input_wait": min(1.0, input_wait_seconds / seconds),
        }
        if self.bar:
            self.bar.update(step, [("loss", values["loss"]), ("lr", values["learning_rate"])])
            return figures
        eta = (self.total - step) / rate if rate > 0 else 0
        epoch = self.epoch(step)
        print(
            f"step {step}/{self.total}"
            + (f" (epoch {epoch:.2f})" if epoch is not None else "")
            + f" loss {values['loss']:.4f} lr {values['learning_rate']:.2e} {rate:.1f} steps/s "
            f"{rate * self.batch_size:.0f} ex/s input wait {figures['input_wait']:.0%} "
            f"ETA {duration(eta)}",
            flush=True,
        )
        return figures

    def finish(self) -> None:
        if self.bar:
            print()


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
