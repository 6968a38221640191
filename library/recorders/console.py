"""The line each evaluation prints."""

from __future__ import annotations

from collections.abc import Callable

from library.recorders.base import Evaluation, Recorder


class SayEvaluation(Recorder):
    """``eval at step 40 (epoch 2.00): loss 0.1, accuracy 0.9  [new best]`` (after KeepBest,
    which marks a new best)."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say

    def on_evaluation(self, evaluation: Evaluation) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in evaluation.results.items())
        self.say(
            f"eval at {evaluation.when()}: {shown}" + ("  [new best]" if evaluation.is_best else "")
        )
