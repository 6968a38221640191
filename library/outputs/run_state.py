"""A run's state beside each checkpoint: what the run needs to continue that is not a tensor.

``ckpt-N.state.json`` holds, for the checkpoint ``ckpt-N``, the state of the rules of patience
(plateau, early stopping), the best value so far, the evaluations each recorder has received
(keyed by step). It is written when the checkpoint is saved and again
after each recorder receives the evaluation of that step, atomically, so a run killed at any
line resumes with exactly the state of the checkpoint it restores: each recorder gets what it
missed, never anything twice. Files written for people (``metrics.jsonl``, CSV, PNG) are
never read back to decide.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import tensorflow as tf

from library.base.files import atomic_write_text, exists, read_text, remove
from library.outputs.checkpoints import CHECKPOINT_PREFIX, numbered_checkpoints

SUFFIX = ".state.json"
FORMAT = 1
_CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}-\d+$")


def path(prefix: str) -> str:
    return f"{prefix}{SUFFIX}"


def read(prefix: str) -> dict[str, Any] | None:
    """The state saved beside checkpoint ``prefix``; None when there is none (a checkpoint
    of an older version, or of a model alone) or it cannot be read."""
    where = path(prefix)
    if not exists(where):
        return None
    try:
        state = json.loads(read_text(where))
    except (ValueError, tf.errors.OpError):
        return None
    return state if isinstance(state, dict) else None


def write(prefix: str, state: dict[str, Any]) -> None:
    """Writes the state beside ``prefix``, atomically (without fsync: as durable as
    TensorFlow's checkpoint files, which are not synced either)."""
    text = json.dumps({"format": FORMAT, **state}, indent=1) + "\n"
    atomic_write_text(path(prefix), text, durable=False)


def best_of(directory: str) -> dict[str, Any] | None:
    """The best so far of the run whose checkpoints are in ``directory`` (what its newest
    checkpoint's state says: ``metric``, ``value``, ``step``); None when it has none."""
    for _, prefix in numbered_checkpoints(directory):
        state = read(prefix)
        if state is not None:
            return state.get("best")
    return None


def remove_orphans(directory: str) -> None:
    """Removes the states of checkpoints that are gone (``keep_checkpoints`` deleted them)."""
    if not tf.io.gfile.isdir(directory):
        return
    names = set(tf.io.gfile.listdir(directory))
    for name in names:
        prefix = name[: -len(SUFFIX)]
        if name.endswith(SUFFIX) and _CHECKPOINT.match(prefix) and f"{prefix}.index" not in names:
            remove(os.path.join(directory, name))
