"""The run state a training run keeps beside each checkpoint (``library/outputs/run_state.py``):
the evaluations each recorder has received, the rules of patience, the best so far. It is read
once, from the checkpoint the run restores, and written with every
checkpoint and after every delivery of an evaluation; nothing is rebuilt from a log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from library.outputs import run_state as state_file

if TYPE_CHECKING:
    from library.outputs.best import BestExporter
    from library.recorders.patience import Patience


class RunState:
    """What a run needs to continue besides its tensors.

    Args:
        saved: the state read beside the checkpoint the run resumes from (None: a fresh run,
            or a checkpoint that has none).
    """

    def __init__(self, saved: dict[str, Any] | None = None):
        saved = saved or {}
        self.saved = saved
        self.delivered: dict[str, int] = dict(saved.get("delivered", {}))
        self.patience: Patience | None = None  # when its rules are on
        self.best: BestExporter | None = None  # when the run keeps a best
        self.prefix: str | None = None  # the checkpoint it is written beside
        # The names of the terms the step state sums (an evaluator in another process reads
        # the training's terms by them: a project's own step logs other names than loss_fn).
        self.terms: list[str] = list(saved.get("terms", []))

    def snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {"delivered": dict(self.delivered)}
        if self.terms:
            state["terms"] = list(self.terms)
        if self.patience is not None:
            state["patience"] = self.patience.to_dict()
        if self.best is not None:
            state["best"] = self.best.best
        elif "best" in self.saved:
            state["best"] = self.saved["best"]
        return state

    def saved_with(self, prefix: str) -> None:
        """A checkpoint was just saved: this state goes beside it, and with each later change
        until the next."""
        self.prefix = prefix
        self.write()

    def write(self) -> None:
        if self.prefix is not None:
            state_file.write(self.prefix, self.snapshot())
