"""Checkpoints that survive kills: robust resume, and a best checkpoint that remembers.

TensorFlow leaves traps here (measured on 2.21): a save killed mid-write leaves ``ckpt-N_temp``
folders that nothing cleans; a garbage or stale ``checkpoint`` state file makes
``latest_checkpoint`` return None, so a naive loop restarts from scratch; a truncated
``.data`` file raises a plain ``IndexError``. ``restore_latest`` cleans the leftovers, never
starts from scratch while ``ckpt-*.index`` files exist, and falls back to the newest
checkpoint that restores, saying which it skipped and why.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable

import tensorflow as tf

from library.files import atomic_write_text

CHECKPOINT_PREFIX = "ckpt"
BEST_JSON = "best.json"
SAVED_MODEL = "saved_model"
_NUMBERED = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")


class CheckpointError(Exception):
    """Checkpoints exist but none can be restored: never silently start from scratch."""


def clean_leftovers(directory: str) -> list[str]:
    """Removes ``*_temp`` folders and ``*.tmp-*`` files left by killed saves."""
    removed = []
    if not tf.io.gfile.isdir(directory):
        return removed
    for name in tf.io.gfile.listdir(directory):
        name = name.rstrip("/")
        path = os.path.join(directory, name)
        if name.endswith("_temp") or ".tmp-" in name:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
            removed.append(name)
    return removed


def numbered_checkpoints(directory: str) -> list[tuple[int, str]]:
    """``(number, prefix)`` of every ``ckpt-N.index`` in ``directory``, newest first."""
    if not tf.io.gfile.isdir(directory):
        return []
    found = []
    for name in tf.io.gfile.listdir(directory):
        match = _NUMBERED.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name[: -len(".index")])))
    return sorted(found, reverse=True)


def restore_from(checkpoint: tf.train.Checkpoint, prefix: str) -> None:
    """Restores every object of ``checkpoint`` from ``prefix``, or raises.

    The file may hold more (an optimizer when only the model is wanted); what
    ``checkpoint`` tracks must all be there: a partial restore would train on garbage.
    """
    checkpoint.restore(prefix).expect_partial().assert_existing_objects_matched()


def restore_latest(
    checkpoint: tf.train.Checkpoint,
    directory: str,
    say: Callable[[str], None],
    read_only: bool = False,
) -> str | None:
    """Restores the newest checkpoint in ``directory`` that restores; None if there is none.

    ``read_only``: neither clean leftovers nor mend the state file (the folder is another
    process's, e.g. a multi-worker chief's).

    Raises:
        CheckpointError: checkpoints exist but every one of them failed to restore.
    """
    removed = [] if read_only else clean_leftovers(directory)
    if removed:
        say(f"removed leftovers of interrupted saves in {directory}: {', '.join(removed)}")
    candidates = numbered_checkpoints(directory)
    problems = []
    for number, prefix in candidates:
        try:
            restore_from(checkpoint, prefix)
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as error:
            reason = (
                str(error).strip().splitlines()[0][:200]
                if str(error).strip()
                else type(error).__name__
            )
            say(f"skipping checkpoint {prefix}: it does not restore ({reason})")
            problems.append(prefix)
            continue
        if not read_only and tf.train.latest_checkpoint(directory) != prefix:
            _rewrite_state(directory, [p for n, p in reversed(candidates) if n <= number])
        return prefix
    if candidates:
        raise CheckpointError(
            f"{directory}: none of {len(candidates)} checkpoints restores (newest: {problems[0]}); "
            "move them away to start from scratch"
        )
    return None


def _rewrite_state(directory: str, prefixes: list[str]) -> None:
    """Points the ``checkpoint`` state file at checkpoints that restore (oldest first).

    Without this, CheckpointManager would trust a garbage or stale state file, and
    would never delete the checkpoints it does not list. (TensorFlow's own writer,
    ``tf.compat.v1.train.update_checkpoint_state``, is deprecated and warns on every call.)
    """
    lines = [f'model_checkpoint_path: "{os.path.basename(prefixes[-1])}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in prefixes]
    # Without their times, CheckpointManager takes the listed checkpoints for ones it must
    # preserve, and keep_checkpoints would never delete them.
    lines += [
        f"all_model_checkpoint_timestamps: {tf.io.gfile.stat(p + '.index').mtime_nsec / 1e9}"
        for p in prefixes
    ]
    lines.append("last_preserved_timestamp: 0.0")
    path = os.path.join(directory, "checkpoint")
    temporary = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(temporary, "w") as stream:
        stream.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(temporary, path, overwrite=True)


def resolve_checkpoint(choice: str, model_dir: str, best_model_dir: str) -> str:
    """The checkpoint prefix named by ``model``: ``latest``, ``best`` or a path."""
    if choice in ("latest", "best"):
        directory = model_dir if choice == "latest" else best_model_dir
        candidates = numbered_checkpoints(directory)
        if not candidates:
            raise CheckpointError(
                f"{directory}: no checkpoint to load (model: {choice}); train first"
            )
        return candidates[0][1]
    if tf.io.gfile.isdir(choice):
        candidates = numbered_checkpoints(choice)
        if candidates:
            return candidates[0][1]
    if tf.io.gfile.exists(f"{choice}.index"):
        return choice
    raise CheckpointError(
        f"{choice}: no checkpoint there (model: latest, best, a folder or a prefix)"
    )


class BestExporter:
    """Keeps the best checkpoint by an evaluation metric in its own folder.

    The folder holds the checkpoint (its own manager, one kept), ``best.json`` (metric, value,
    step, epoch, time) and a SavedModel of the same weights, all written atomically.
    ``best.json`` is read back at start, so a restarted run never replaces a better best with
    a worse one (the failure of tf.estimator's BestExporter and Keras ModelCheckpoint).
    """

    def __init__(self, directory: str, metric: str, mode: str):
        self.directory = directory
        self.metric = metric
        self.mode = mode
        clean_leftovers(directory)
        self.best = self._read_best()
        self._manager: tf.train.CheckpointManager | None = None
        self._model = None
        self._lock = threading.Lock()  # the folder and best.json, against a background export

    def _read_best(self) -> dict | None:
        path = os.path.join(self.directory, BEST_JSON)
        if not tf.io.gfile.exists(path):
            return None
        try:
            with tf.io.gfile.GFile(path) as stream:
                best = json.load(stream)
            float(best["value"])
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: the next evaluation writes a fresh one
        return best if best.get("metric") == self.metric else None

    def is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def maybe_export(
        self, results: dict, step: int, epoch: float, model, checkpoint: str | None = None
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
                f"best_metric {self.metric!r} is not an evaluation result; use one of: {', '.join(results)}"
            )
        value = float(results[self.metric])
        if not self.is_better(value):
            return False
        with self._lock:
            if checkpoint:
                kept = self._link(checkpoint, step)
            else:
                if self._model is not model:
                    self._manager = tf.train.CheckpointManager(
                        tf.train.Checkpoint(model=model), self.directory, max_to_keep=1
                    )
                    self._model = model
                kept = self._manager.save(checkpoint_number=step)
            self.best = {
                "metric": self.metric,
                "value": value,
                "step": step,
                "epoch": round(epoch, 4),
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
        _rewrite_state(self.directory, [prefix])
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
        temporary = f"{final}.tmp-{os.getpid()}"
        try:
            export_fn(source, temporary)
        finally:
            tf.io.gfile.rmtree(private)
        with self._lock:
            if tf.io.gfile.exists(final):
                tf.io.gfile.rmtree(final)
            tf.io.gfile.rename(temporary, final)
            self.best["saved_model_step"] = best["step"]
            self._write_best()
        return final


def _link_files(source: str, prefix: str) -> str:
    """Hard-links (or, across file systems, copies) the files of checkpoint ``source`` as
    ``prefix``, the index last (it marks a complete checkpoint); returns ``prefix``."""
    suffixes = [path[len(source) :] for path in tf.io.gfile.glob(f"{source}.*")]
    for suffix in sorted(suffixes, key=lambda s: s == ".index"):
        temporary = f"{prefix}{suffix}.tmp-{os.getpid()}"
        try:
            os.link(f"{source}{suffix}", temporary)
        except OSError:  # another file system, or not a local path
            tf.io.gfile.copy(f"{source}{suffix}", temporary, overwrite=True)
        tf.io.gfile.rename(temporary, f"{prefix}{suffix}", overwrite=True)
    return prefix
