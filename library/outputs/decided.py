"""What the data decides (the keys a project's ``prepare_fn`` fills in: classes, a vocabulary),
kept in every checkpoint of the run it decided.

Training calls ``prepare_fn`` and saves what it changed in each checkpoint; evaluate, predict,
export and continuous evaluation read it back from the checkpoint they load and need no
training data. A resume whose data decides otherwise is refused: the weights were trained on
what the checkpoint says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from library.config import Params, plain
from library.outputs.checkpoints import CheckpointError, numbered_checkpoints

KEY = "data_decided"  # its name in the checkpoint
_TENSOR = f"{KEY}/.ATTRIBUTES/VARIABLE_VALUE"


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The keys ``after`` (prepared) gives other values than ``before``, as plain data."""
    return {key: plain(after[key]) for key in after if plain(after[key]) != plain(before[key])}


def variable(decided: Mapping[str, Any]) -> tf.Variable:
    """``decided`` as the string variable a checkpoint saves (on the host: strings live
    there; outside any strategy: every worker saves the same)."""
    with tf.device("/cpu:0"):
        return tf.Variable(json.dumps(decided, sort_keys=True), dtype=tf.string, trainable=False)


def read(prefix: str) -> dict[str, Any] | None:
    """What the data decided for the run of checkpoint ``prefix``; None when it holds no
    record (a checkpoint of a model alone) or cannot be read (restoring it says why)."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        if not reader.has_tensor(_TENSOR):
            return None
        return json.loads(reader.get_tensor(_TENSOR))
    except (tf.errors.OpError, ValueError, IndexError):  # a truncated file: IndexError
        return None


def differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs, key by key, in counts rather than values (a vocabulary is long)."""
    said = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            differ = sum(a != b for a, b in zip(old, new, strict=False))
            said.append(f"{key} ({len(new)} values now, {len(old)} then, {differ} of them changed)")
        else:
            said.append(f"{key} ({_short(new)} now, {_short(old)} then)")
    return said


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else f"{text[:20]}..."


def prepare(
    prepare_fn: Callable[[Params], Params] | None,
    params: Params,
    checkpoint: str | None = None,
) -> tuple[Params, dict[str, Any]]:
    """``params`` with what the data decides, and those values.

    Args:
        prepare_fn: the project's (None: the data decides nothing).
        params: the resolved configuration.
        checkpoint: the prefix of the checkpoint a mode that does not train loads (evaluate,
            predict, export): its saved values are used, and ``prepare_fn`` is called only
            when it holds none. None: training, which calls ``prepare_fn`` and compares what
            it decides with the newest checkpoint of ``model_dir``.

    Raises:
        CheckpointError: training would resume from checkpoints whose data decided
            otherwise.
    """
    if checkpoint is not None:
        saved = read(checkpoint)
        if saved is not None:
            return (params.replace(**saved) if saved else params), saved
    prepared = prepare_fn(params) if prepare_fn is not None else params
    decided = changes(params, prepared)
    if checkpoint is None:
        records = (read(prefix) for _, prefix in numbered_checkpoints(params.model_dir))
        saved = next((record for record in records if record is not None), None)
        different = differences(saved, decided) if saved is not None else []
        if different:
            raise CheckpointError(
                f"{params.model_dir}: the training data decides {'; '.join(different)} "
                "otherwise than for its checkpoints; train into a new model_dir, or on the "
                "data they were trained on"
            )
    return prepared, decided
