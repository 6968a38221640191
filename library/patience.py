"""Plateau and early stopping on the eval loss, as Keras' ReduceLROnPlateau and EarlyStopping
define them (without cooldown), with a state that is never lost: it is a function of the
evaluations recorded in ``metrics.jsonl``, replayed at every start.

After each evaluation, for each rule: if ``eval_loss < best - min_delta`` then ``best =
eval_loss`` and its wait restarts, else its wait grows by one. When the plateau wait reaches
``plateau_patience`` the learning-rate multiplier is multiplied by ``plateau_factor`` (the rate
not below ``plateau_min_lr``) and the wait restarts; when the early-stopping wait reaches
``early_stopping_patience`` training stops after this evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass
class Rule:
    """One rule's memory: the best eval loss so far and the evaluations since."""

    patience: int
    min_delta: float
    best: float = math.inf
    wait: int = 0

    def update(self, loss: float) -> bool:
        """Counts one evaluation; True when the wait reaches the patience."""
        if not math.isfinite(loss):
            self.wait += 1
        elif loss < self.best - self.min_delta:
            self.best, self.wait = loss, 0
        else:
            self.wait += 1
        return self.patience > 0 and self.wait >= self.patience


@dataclass
class Patience:
    """Both rules, the multiplier they set and whether training stopped."""

    plateau: Rule
    early_stopping: Rule
    factor: float
    min_lr: float
    multiplier: float = 1.0
    stopped_at: int | None = None  # the step whose evaluation stopped training
    reductions: int = 0

    @classmethod
    def from_params(cls, params: Mapping) -> Patience:
        return cls(
            Rule(params["plateau_patience"], params["plateau_min_delta"]),
            Rule(params["early_stopping_patience"], params["early_stopping_min_delta"]),
            params["plateau_factor"],
            params["plateau_min_lr"],
        )

    @property
    def active(self) -> bool:
        return self.plateau.patience > 0 or self.early_stopping.patience > 0

    def update(self, step: int, eval_loss: float, learning_rate: float | None) -> list[str]:
        """Applies the rules to one evaluation; returns what happened, in words.

        ``learning_rate`` is the rate in force before this evaluation (the multiplier
        included), which the plateau's floor compares with.
        """
        events = []
        if self.plateau.update(eval_loss):
            base = (learning_rate or 0.0) / self.multiplier
            floor = self.min_lr / base if base > 0 else 0.0
            lowered = min(self.multiplier, max(self.multiplier * self.factor, floor))
            if lowered < self.multiplier:
                self.multiplier, self.reductions = lowered, self.reductions + 1
                events.append(
                    f"plateau: no improvement of the eval loss in {self.plateau.patience} "
                    f"evaluations; learning rate x{self.factor:g} "
                    f"(multiplier {self.multiplier:.4g}) from step {step}"
                )
            self.plateau.wait = 0
        if self.early_stopping.update(eval_loss) and self.stopped_at is None:
            self.stopped_at = step
            events.append(self.stop_reason())
        return events

    def stop_reason(self) -> str:
        return (
            f"early stopping at step {self.stopped_at}: the eval loss has not improved on "
            f"{self.early_stopping.best:.4g} for {self.early_stopping.patience} evaluations"
        )

    def replay(self, records: Iterable[Mapping]) -> Patience:
        """The state after the recorded evaluations (rows of metrics.jsonl), in order."""
        for record in records:
            self.update(record["step"], record["eval_loss"], record.get("learning_rate"))
        return self
