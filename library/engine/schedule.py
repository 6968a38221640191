"""The one place that turns epochs into steps and decides when things happen."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from library.base.errors import PlanError


@dataclass(frozen=True)
class Plan:
    """Every duration of a run, in steps.

    ``schedule_steps`` is the length the learning-rate schedule is built for: the
    ``train_steps`` of the run that started ``model_dir``, kept in its checkpoints, so that a
    resume with another ``train_steps`` continues the same rate instead of reshaping it.
    ``steps_per_epoch`` is 0 when the records of an epoch are not counted (a run in steps).
    """

    steps_per_epoch: int
    train_steps: int
    eval_every_steps: int
    checkpoint_every_steps: int
    log_every_steps: int
    schedule_steps: int = 0

    def __post_init__(self):
        if self.schedule_steps <= 0:
            object.__setattr__(self, "schedule_steps", self.train_steps)

    def epoch(self, step: int) -> float | None:
        """The epoch ``step`` reaches; None when epochs are not counted."""
        return step / self.steps_per_epoch if self.steps_per_epoch else None

    def steps(self, epochs: float) -> int:
        """``epochs`` as a whole number of steps (the one epochs-to-steps conversion)."""
        if not epochs:
            return 0
        if not self.steps_per_epoch:
            raise PlanError(
                f"{epochs:g} epochs: the records of an epoch are not counted; set "
                "train_records (or write the records with a manifest), or give that length "
                "in steps"
            )
        return max(0, round(epochs * self.steps_per_epoch))

    def replace(self, **changes) -> Plan:
        return dataclasses.replace(self, **changes)


def make_plan(params: Mapping, train_records: int | None) -> Plan:
    """Durations from ``params``: epochs need the record count, explicit steps win.

    Args:
        params: the resolved configuration.
        train_records: records in the training files (one epoch), e.g. from
            ``library.data.records.count_records``; None when unknown (a run in steps).

    Raises:
        PlanError: a length in epochs while the records are not counted.
    """
    records = params["train_records"] or train_records
    per_update = params["train_batch_size"] * params.get("accumulate_batches", 1)
    steps_per_epoch = max(1, records // per_update) if records else 0
    per_epoch = Plan(steps_per_epoch, 1, 1, 1, 1)
    train_steps = params["train_steps"] or max(1, per_epoch.steps(params["train_epochs"]))
    eval_every = params["steps_between_evals"] or max(
        1, per_epoch.steps(params["epochs_between_evals"])
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
    events; the final step always counts when ``last_step`` is given. ``every`` 0 means only
    the final step.
    """
    if last_step is not None and step >= last_step > previous_step:
        return True
    return every > 0 and step // every > previous_step // every


def next_boundary(step: int, intervals: Iterable[int], last_step: int) -> int:
    """The next step at which something must happen (so a chunk never runs past it)."""
    candidates = [last_step]
    candidates += [(step // every + 1) * every for every in intervals if every > 0]
    return min(candidates)
