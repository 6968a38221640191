"""Checkpoints that survive kills: robust resume, and a best checkpoint that remembers.

TensorFlow leaves traps here (measured on 2.21): a save killed mid-write leaves ``ckpt-N_temp``
folders that nothing cleans; a garbage or stale ``checkpoint`` state file makes
``latest_checkpoint`` return None, so a naive loop restarts from scratch; a truncated
``.data`` file raises a plain ``IndexError``. ``restore_latest`` cleans the leftovers, never
starts from scratch while ``ckpt-*.index`` files exist, and falls back to the newest
checkpoint that restores, saying which it skipped and why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import tensorflow as tf

from library.base.errors import CheckpointError, NotRestorableError, first_line
from library.base.files import atomic_write_text, remove_tree

CHECKPOINT_PREFIX = "ckpt"
_NUMBERED = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")


def clean_leftovers(directory: str) -> list[str]:
    """Removes ``*_temp`` folders and ``*.tmp-*`` files left by killed saves."""
    removed: list[str] = []
    if not tf.io.gfile.isdir(directory):
        return removed
    for name in tf.io.gfile.listdir(directory):
        name = name.rstrip("/")
        path = os.path.join(directory, name)
        if name.endswith("_temp") or ".tmp-" in name:
            if tf.io.gfile.isdir(path):
                remove_tree(path)
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


def root_keys(prefix: str) -> set[str]:
    """The names a checkpoint's root holds (``model``, ``optimizer``, ``state``, ...)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(
        tf.train.load_checkpoint(prefix).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    )
    return {child.local_name for child in graph.nodes[0].children}


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
    problems: list[tuple[str, str]] = []
    for number, prefix in candidates:
        try:
            restore_from(checkpoint, prefix)
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as error:
            reason = first_line(error)
            problems.append((prefix, reason))
            continue
        for skipped, reason in problems:  # said only when an older one restores instead
            say(f"skipping checkpoint {skipped}: it does not restore ({reason})")
        if not read_only and tf.train.latest_checkpoint(directory) != prefix:
            rewrite_state(directory, [p for n, p in reversed(candidates) if n <= number])
        return prefix
    if candidates:
        newest, reason = problems[0]
        raise NotRestorableError(
            f"{directory}: none of {len(candidates)} checkpoints restores (newest: {newest}: "
            f"{reason}); move them away to start from scratch",
            directory,
        )
    return None


def rewrite_state(directory: str, prefixes: list[str]) -> None:
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
    atomic_write_text(os.path.join(directory, "checkpoint"), "\n".join(lines) + "\n")


def resolve_checkpoint(choice: str, model_dir: str, best_model_dir: str) -> str:
    """The checkpoint prefix named by ``model``: ``latest``, ``best`` or a path."""
    if choice in ("latest", "best"):
        directory = model_dir if choice == "latest" else best_model_dir
        candidates = numbered_checkpoints(directory)
        if not candidates:
            raise CheckpointError(
                f"{directory}: no checkpoint to load (checkpoint: {choice}); train first"
            )
        return candidates[0][1]
    if tf.io.gfile.exists(f"{choice}.index"):  # first: ram:// takes a prefix for a folder
        return choice
    if tf.io.gfile.isdir(choice):
        candidates = numbered_checkpoints(choice)
        if candidates:
            return candidates[0][1]
    raise CheckpointError(
        f"{choice}: no checkpoint there (checkpoint: latest, best, a folder or a prefix)"
    )
