"""The recorder that keeps the best checkpoint (``library/outputs/best.py``) and its
SavedModel, written in the background."""

from __future__ import annotations

from collections.abc import Callable

from library.outputs.best import BestExporter
from library.recorders.base import Background, Evaluation, Recorder


class KeepBest(Recorder):
    """Saves the evaluated weights as the best checkpoint when they beat the best so far.

    The best's SavedModel is written in the background from the best checkpoint (seconds of
    tracing the training step need not wait for); a new best arriving meanwhile is exported
    once that export ends. ``finish`` waits for it, and writes the SavedModel when the one in
    the folder is older than the best (a run killed before its export).
    """

    essential = True

    def __init__(self, exporter: BestExporter, export_fn: Callable[[str, str], None] | None = None):
        self.exporter, self.export_fn = exporter, export_fn
        self.background = Background("export", coalesce=True)

    def on_evaluation(self, evaluation: Evaluation) -> None:
        evaluation.is_best = self.exporter.maybe_export(
            evaluation.results,
            evaluation.step,
            evaluation.epoch,
            evaluation.model,
            evaluation.checkpoint,
        )
        if evaluation.is_best and self.export_fn is not None:
            self.background.submit(self.exporter.export_saved_model, self.export_fn)

    def finish(self) -> None:
        self.background.wait()
        if self.export_fn is not None:
            self.exporter.export_saved_model(self.export_fn)
