"""The best checkpoint by an evaluation metric, in a folder of its own that remembers why it
is the best (``best.json``) and holds a SavedModel of it."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable

import tensorflow as tf

from library.base.files import atomic_write_text, move_tree, remove_tree, temporary_folder
from library.outputs import run_state
from library.outputs.checkpoints import (
    CHECKPOINT_PREFIX,
    CheckpointError,
    clean_leftovers,
    numbered_checkpoints,
    rewrite_state,
)

BEST_JSON = "best.json"
SAVED_MODEL = "saved_model"


class BestExporter:
    """Keeps the best checkpoint by an evaluation metric in its own folder.

    The folder holds the checkpoint (its own manager, one kept), ``best.json`` (metric, value,
    step, epoch, time) and a SavedModel of the same weights, all written atomically. The best
    so far is part of the run state saved beside every checkpoint (``best``, what ``self.best``
    was), so a restarted run never replaces a better best with a worse one (the failure of
    tf.estimator's BestExporter and Keras ModelCheckpoint); ``best.json`` is for people and
    the tools that load the best model.

    Args:
        directory: the folder (``best_model_dir``).
        metric, mode: ``best_metric`` and ``best_mode``.
        best: the best so far, from the run state (None: none yet, or by another metric).
    """

    def __init__(self, directory: str, metric: str, mode: str, best: dict | None = None):
        self.directory = directory
        self.metric = metric
        self.mode = mode
        clean_leftovers(directory)
        self.best = best if best and best.get("metric") == metric else None
        self._manager: tf.train.CheckpointManager | None = None
        self._model = None
        self._lock = threading.Lock()  # the folder and best.json, against a background export

    def is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def maybe_export(
        self, results: dict, step: int, epoch: float | None, model, checkpoint: str | None = None
    ) -> bool:
        """Keeps these weights and best.json when ``results`` beat the best so far.

        Args:
            results: the evaluation's results (holding ``metric``).
            step, epoch: when the weights were evaluated.
            model: the evaluated model (saved when ``checkpoint`` is not given).
            checkpoint: the prefix of a saved checkpoint of exactly these weights: its files
                are linked (or copied) instead of saving the weights again.
        """
        if self.metric not in results:
            raise CheckpointError(
                f"best_metric {self.metric!r} is not an evaluation result; use one of: "
                f"{', '.join(results)}"
            )
        value = float(results[self.metric])
        if not self.is_better(value):
            return False
        with self._lock:
            if checkpoint:
                kept = self._link(checkpoint, step)
            else:
                if self._manager is None or self._model is not model:
                    self._manager = tf.train.CheckpointManager(
                        tf.train.Checkpoint(model=model), self.directory, max_to_keep=1
                    )
                    self._model = model
                kept = self._manager.save(checkpoint_number=step)
            self.best = {
                "metric": self.metric,
                "value": value,
                "step": step,
                "epoch": None if epoch is None else round(epoch, 4),
                "checkpoint": os.path.basename(kept),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            self._write_best()
        return True

    def _link(self, source: str, step: int) -> str:
        """Hard-links (or, across file systems, copies) a checkpoint's files into the folder
        as ``ckpt-<step>``, the index last (it marks a complete checkpoint), then removes the
        previous best and points the ``checkpoint`` state file at the new one."""
        tf.io.gfile.makedirs(self.directory)
        prefix = _link_files(source, os.path.join(self.directory, f"{CHECKPOINT_PREFIX}-{step}"))
        for number, old in numbered_checkpoints(self.directory):
            if number != step:
                for path in tf.io.gfile.glob(f"{old}.*"):
                    tf.io.gfile.remove(path)
        rewrite_state(self.directory, [prefix])
        return prefix

    def _write_best(self) -> None:
        atomic_write_text(
            os.path.join(self.directory, BEST_JSON), json.dumps(self.best, indent=2) + "\n"
        )

    def export_saved_model(self, export_fn: Callable[[str, str], None]) -> str | None:
        """Writes the best checkpoint's SavedModel unless the one there is of the same step.

        ``export_fn(checkpoint_prefix, directory)`` restores and exports. Safe to run in a
        background thread while ``maybe_export`` keeps new bests: the checkpoint is exported
        from hard links of its own, and ``best.json`` records the step of the SavedModel
        written (``saved_model_step``), so a run killed before its export writes it at the
        next start. Returns the SavedModel's path when one was written.
        """
        final = os.path.join(self.directory, SAVED_MODEL)
        with self._lock:
            best = dict(self.best) if self.best else None
            if best is None or (
                best.get("saved_model_step") == best["step"] and tf.io.gfile.exists(final)
            ):
                return None
            prefix = os.path.join(self.directory, best["checkpoint"])
            if not tf.io.gfile.exists(f"{prefix}.index"):
                return None
            # A newer best removes this checkpoint's files: export from links of its own.
            private = os.path.join(self.directory, f"export.tmp-{os.getpid()}")
            tf.io.gfile.makedirs(private)
            source = _link_files(prefix, os.path.join(private, CHECKPOINT_PREFIX))
        temporary = temporary_folder(final)
        try:
            export_fn(source, temporary)
        finally:
            remove_tree(private)
        with self._lock:
            if tf.io.gfile.exists(final):
                remove_tree(final)
            move_tree(temporary, final)
            assert self.best is not None  # a newer best may have replaced it, never unset it
            self.best["saved_model_step"] = best["step"]
            self._write_best()
        return final


def _link_files(source: str, prefix: str) -> str:
    """Hard-links (or, across file systems, copies) the files of checkpoint ``source`` as
    ``prefix``, the index last (it marks a complete checkpoint); returns ``prefix``."""
    suffixes = [
        path[len(source) :]
        for path in tf.io.gfile.glob(f"{source}.*")
        if not path.endswith(run_state.SUFFIX)  # the run's state, not the weights'
    ]
    for suffix in sorted(suffixes, key=lambda s: s == ".index"):
        temporary = f"{prefix}{suffix}.tmp-{os.getpid()}"
        try:
            os.link(f"{source}{suffix}", temporary)
        except OSError:  # another file system, or not a local path
            tf.io.gfile.copy(f"{source}{suffix}", temporary, overwrite=True)
        tf.io.gfile.rename(temporary, f"{prefix}{suffix}", overwrite=True)
    return prefix
