"""Plateau and early stopping on ``best_metric`` (the eval loss by default; ``best_mode`` says
whether lower or higher is better), as Keras' ReduceLROnPlateau and EarlyStopping define them
(without cooldown), with a state that is never lost: it is saved in the run state beside
every checkpoint (``library/engine/run_state.py``) and restored with it.

After each evaluation, for each rule: if the metric improves on the best by more than
``min_delta`` (lower for ``min``, higher for ``max``) it becomes the best and the rule's wait
restarts, else its wait grows by one. When the plateau wait reaches ``plateau_patience`` the
learning-rate multiplier is multiplied by ``plateau_factor`` (the rate not below
``plateau_min_lr``) and the wait restarts; when the early-stopping wait reaches
``early_stopping_patience`` training stops after this evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from library.recorders.base import Evaluation, Recorder


@dataclass
class Rule:
    """One rule's memory: the best value so far and the evaluations since."""

    patience: int
    min_delta: float
    mode: str = "min"
    best: float | None = None
    wait: int = 0

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> bool:
        """Counts one evaluation; True when the wait reaches the patience."""
        if self.improves(value):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return self.patience > 0 and self.wait >= self.patience


@dataclass
class Patience:
    """Both rules on one metric, the multiplier they set and whether training stopped."""

    plateau: Rule
    early_stopping: Rule
    factor: float
    min_lr: float
    metric: str = "loss"
    multiplier: float = 1.0
    stopped_at: int | None = None  # the step whose evaluation stopped training
    reductions: int = 0

    @classmethod
    def from_params(cls, params: Mapping) -> Patience:
        mode = params["best_mode"]
        return cls(
            Rule(params["plateau_patience"], params["plateau_min_delta"], mode),
            Rule(params["early_stopping_patience"], params["early_stopping_min_delta"], mode),
            params["plateau_factor"],
            params["plateau_min_lr"],
            params["best_metric"],
        )

    @property
    def active(self) -> bool:
        return self.plateau.patience > 0 or self.early_stopping.patience > 0

    def update(self, step: int, value: float, learning_rate: float | None) -> list[str]:
        """Applies the rules to one evaluation's metric; returns what happened, in words.

        ``learning_rate`` is the rate in force before this evaluation (the multiplier
        included), which the plateau's floor compares with.
        """
        events = []
        if self.plateau.update(value):
            base = (learning_rate or 0.0) / self.multiplier
            floor = self.min_lr / base if base > 0 else 0.0
            lowered = min(self.multiplier, max(self.multiplier * self.factor, floor))
            if lowered < self.multiplier:
                self.multiplier, self.reductions = lowered, self.reductions + 1
                events.append(
                    f"plateau: no improvement of the eval {self.metric} in "
                    f"{self.plateau.patience} evaluations; learning rate x{self.factor:g} "
                    f"(multiplier {self.multiplier:.4g}) from step {step}"
                )
            self.plateau.wait = 0
        if self.early_stopping.update(value) and self.stopped_at is None:
            self.stopped_at = step  # said by the loop, which stops at it
        return events

    def stop_reason(self) -> str:
        best = self.early_stopping.best
        shown = "any finite value" if best is None else f"{best:.4g}"
        return (
            f"early stopping at step {self.stopped_at}: the eval {self.metric} has not "
            f"improved on {shown} for {self.early_stopping.patience} evaluations"
        )

    def to_dict(self) -> dict:
        """The state of both rules, for the run state saved beside each checkpoint."""
        return {
            "plateau": {"best": self.plateau.best, "wait": self.plateau.wait},
            "early_stopping": {"best": self.early_stopping.best, "wait": self.early_stopping.wait},
            "multiplier": self.multiplier,
            "stopped_at": self.stopped_at,
            "reductions": self.reductions,
        }

    def restore(self, saved: Mapping | None) -> Patience:
        """The state ``to_dict`` gave (None: as at the start of a run)."""
        if saved:
            rules = {"plateau": self.plateau, "early_stopping": self.early_stopping}
            for name, rule in rules.items():
                rule.best, rule.wait = saved[name]["best"], saved[name]["wait"]
            self.multiplier, self.stopped_at = saved["multiplier"], saved["stopped_at"]
            self.reductions = saved["reductions"]
        return self


class ApplyPatience(Recorder):
    """Plateau and early stopping after each evaluation: lowers the trainer's learning-rate
    multiplier, or asks the loop to stop."""

    essential = True

    def __init__(self, patience: Patience, trainer, stop, say: Callable[[str], None]):
        self.patience, self.trainer, self.stop, self.say = patience, trainer, stop, say

    def on_evaluation(self, evaluation: Evaluation) -> None:
        rate = evaluation.learning_rate
        value = evaluation.results[self.patience.metric]
        for event in self.patience.update(evaluation.step, value, rate):
            self.say(event)
        self.trainer.state.lr_multiplier.assign(self.patience.multiplier)
        if self.patience.stopped_at is not None:
            self.stop.ask(self.patience.stop_reason())
