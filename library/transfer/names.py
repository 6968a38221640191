"""Variable names that do not depend on what else a process built, the variables of a
checkpoint or SavedModel by name, and their inspection (``--mode inspect``).

Every rule here matches *variable names*: the Keras path of each variable (``conv2d/kernel``,
``logits/bias``, ``hub/batch_normalization/gamma``) with Keras' automatic layer-name counters
renumbered from zero within the model, so that a name never depends on what else was built
in the process before (a fresh process's first model gets ``conv2d``, ``conv2d_1``, ...; so
does every model here). ``--mode inspect`` lists them.

Sources of a warm start, read by name:

* this project's checkpoints (and any TF2 object-based checkpoint of a Keras 3 model): the
  names recorded in the checkpoint's object graph, renumbered the same way;
* a TF1 name-based checkpoint (``tf.compat.v1.train.Saver``, tf.estimator): its keys;
* a SavedModel: its ``variables/variables`` checkpoint.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from library.base.errors import TransferError, first_line

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_SUFFIX = re.compile(r"^(?P<base>.+?)(?:_(?P<number>\d+))?$")


def _snake_case(name: str) -> str:
    # Keras' own rule for automatic layer names (keras.src.utils.naming.to_snake_case).
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@functools.cache
def _automatic_bases() -> frozenset[str]:
    """The names Keras gives layers and models that nobody named (``conv2d``, ``dense``...)."""
    classes = [getattr(keras.layers, n) for n in dir(keras.layers)] + [keras.Model]
    bases = {_snake_case(c.__name__) for c in classes if isinstance(c, type)}
    return frozenset(bases | {"functional", "sequential", "seed_generator"})


def canonical_names(paths: Sequence[str]) -> list[str]:
    """``paths`` with Keras' automatic name counters renumbered from zero, in creation order.

    Within each parent path, the segments named automatically after one layer class
    (``conv2d_7``, ``conv2d_9`` ...) are renumbered by their counter: ``conv2d``,
    ``conv2d_1`` ... Names a user gave (``logits``, ``block1_2``) stay as they are.
    """
    bases = _automatic_bases()
    seen: dict[tuple[str, str], set[int]] = {}
    split = [path.split("/") for path in paths]
    for parts in split:
        for depth, segment in enumerate(parts[:-1]):
            base, number = _counted(segment)
            if base in bases:
                seen.setdefault(("/".join(parts[:depth]), base), set()).add(number)
    order = {key: {n: i for i, n in enumerate(sorted(numbers))} for key, numbers in seen.items()}
    names = []
    for parts in split:
        renamed = list(parts)
        for depth, segment in enumerate(parts[:-1]):
            base, number = _counted(segment)
            key = ("/".join(parts[:depth]), base)
            if key in order:
                index = order[key][number]
                renamed[depth] = base + (f"_{index}" if index else "")
        names.append("/".join(renamed))
    return names


def _counted(segment: str) -> tuple[str, int]:
    """``conv2d_7`` as ``("conv2d", 7)``; a segment without a counter has 0."""
    match = _SUFFIX.match(segment)
    if match is None:  # an empty segment (the pattern matches any other)
        return segment, 0
    return match["base"], int(match["number"] or 0)


def is_weight(name: str) -> bool:
    """False for a random generator's state (dropout's): not learned, not checkpointed."""
    return not name.endswith("seed_generator_state")


def variable_names(model: keras.Model) -> list[str]:
    """The canonical name of each of ``model.variables``, in that order."""
    return canonical_names([v.path for v in model.variables])


# -- reading a source by name ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The variables of a checkpoint or SavedModel, by name: ``{name: checkpoint key}``."""

    path: str  # the checkpoint prefix read
    kind: str  # "TF2 checkpoint", "TF1 checkpoint"
    keys: Mapping[str, str]
    reader: tf.train.CheckpointReader
    shapes: Mapping[str, list[int]]  # by checkpoint key (the reader rebuilds its maps per call)
    dtypes: Mapping[str, tf.DType]

    def shape(self, name: str) -> list[int]:
        return self.shapes[self.keys[name]]

    def dtype(self, name: str) -> tf.DType:
        return self.dtypes[self.keys[name]]

    def value(self, name: str) -> np.ndarray:
        return self.reader.get_tensor(self.keys[name])


def checkpoint_prefix(path: str) -> str:
    """The checkpoint prefix of ``path``: a prefix, a folder with a checkpoint, or a
    SavedModel folder."""
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return os.path.join(path, "variables", "variables")
    if tf.io.gfile.exists(f"{path}.index"):  # first: ram:// takes a prefix for a folder
        return path
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise TransferError(f"{path}: a folder with no checkpoint and no saved_model.pb")
        return latest
    if not tf.io.gfile.glob(path + ".index") and not tf.io.gfile.exists(path):
        raise TransferError(f"{path}: no such checkpoint (give a prefix, a folder or a SavedModel)")
    return path


def checkpoint_reader(prefix: str) -> tf.train.CheckpointReader:
    """The reader of checkpoint ``prefix`` (``tf.train.load_checkpoint`` takes a prefix on
    ``ram://`` for a folder and looks for a state file in it)."""
    return tf.compat.v1.train.NewCheckpointReader(prefix)


def read_source(path: str) -> Source:
    """The variables of the checkpoint or SavedModel at ``path``, by name."""
    prefix = checkpoint_prefix(path)
    try:
        reader = checkpoint_reader(prefix)
    except (tf.errors.OpError, ValueError) as error:
        reason = first_line(error)
        raise TransferError(f"{path}: not a readable checkpoint ({reason})") from None
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    if OBJECT_GRAPH_KEY not in shapes:
        keys = {key: key for key in sorted(shapes)}
        return Source(prefix, "TF1 checkpoint", keys, reader, shapes, dtypes)
    graph = _object_graph(reader)
    full: dict[str, str] = {}
    ambiguous = set()
    for node in graph.nodes:
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE" and attribute.checkpoint_key in shapes:
                name = attribute.full_name or attribute.checkpoint_key
                if full.setdefault(name, attribute.checkpoint_key) != attribute.checkpoint_key:
                    ambiguous.add(name)
    # A variable the optimizer also tracks may be keyed under it: its name is what counts.
    # Two variables of one name (two modules' conv2d/kernel) cannot be told apart by name.
    for name in ambiguous:
        del full[name]
    names = canonical_names(list(full))
    keys = dict(zip(names, full.values(), strict=True))
    return Source(prefix, "TF2 checkpoint", keys, reader, shapes, dtypes)


def _object_graph(reader: tf.train.CheckpointReader):
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    return graph


def optimizer_variable_names(prefix: str) -> list[str] | None:
    """The canonical names of the variables the optimizer of a checkpoint of ours trained,
    in its order (its slots are saved by position), or None when it holds no optimizer."""
    reader = checkpoint_reader(prefix)
    graph = _object_graph(reader)
    node = graph.nodes[0]
    for child in ("optimizer", "_trainable_variables"):
        ids = [c.node_id for c in node.children if c.local_name == child]
        if not ids:
            return None
        node = graph.nodes[ids[0]]
    ordered = sorted(node.children, key=lambda c: int(c.local_name))
    names = [graph.nodes[c.node_id].attributes[0].full_name for c in ordered]
    return canonical_names(names)


def tensorflow_names(variables: Sequence) -> list[str]:
    """What a checkpoint records of each variable: its ``tf.Variable``'s name, canonical."""
    return canonical_names([getattr(v, "value", v).name.split(":")[0] for v in variables])


# -- inspection -------------------------------------------------------------------------------


def _line(name: str, shape, dtype) -> str:
    return f"{name} [{','.join(str(int(d)) for d in shape)}] {tf.as_dtype(dtype).name}"


def inspect_model(model: keras.Model) -> list[str]:
    """``name [shape] dtype`` for each of ``model.variables`` (random states aside), in order."""
    return [
        _line(name, variable.shape, variable.dtype)
        for name, variable in zip(variable_names(model), model.variables, strict=True)
        if is_weight(name)
    ]


def inspect_path(path: str) -> list[str]:
    """``name [shape] dtype`` for each variable of a checkpoint (TF1 or TF2) or SavedModel."""
    source = read_source(path)
    return [_line(n, source.shape(n), source.dtype(n)) for n in source.keys]
