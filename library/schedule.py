"""The one place that turns epochs into steps and decides when things happen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Every duration of a run, in steps."""

    steps_per_epoch: int
    train_steps: int
    eval_every_steps: int
    checkpoint_every_steps: int
    log_every_steps: int

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch


def make_plan(params: Mapping, train_records: int) -> Plan:
    """Durations from ``params``: epochs need the record count, explicit steps win."""
    steps_per_epoch = max(1, train_records // params["train_batch_size"])
    train_steps = params["train_steps"] or max(1, round(params["train_epochs"] * steps_per_epoch))
    eval_every = params["steps_between_evals"] or max(
        1, round(params["epochs_between_evals"] * steps_per_epoch)
    )
    return Plan(
        steps_per_epoch=steps_per_epoch,
        train_steps=train_steps,
        eval_every_steps=eval_every,
        checkpoint_every_steps=params["save_checkpoints_steps"] or eval_every,
        log_every_steps=max(1, params["log_steps"]),
    )


def is_time(step: int, every: int, previous_step: int, last_step: int | None = None) -> bool:
    """Whether a multiple of ``every`` was reached going from ``previous_step`` to ``step``.

    Steps advance in chunks (several steps per call), so "step % every == 0" would miss
    events; the final step always counts when ``last_step`` is given.
    """
    if last_step is not None and step >= last_step > previous_step:
        return True
    return every > 0 and step // every > previous_step // every


def next_boundary(step: int, plan: Plan, last_step: int) -> int:
    """The next step at which something must happen (so a chunk never runs past it)."""
    candidates = [last_step]
    for every in (plan.eval_every_steps, plan.checkpoint_every_steps, plan.log_every_steps):
        candidates.append((step // every + 1) * every)
    return min(candidates)
