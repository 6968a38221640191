"""Records of any schema: a writer of sharded TFRecord files with a manifest, and the record
counts the engine reads from manifests (epochs need them).

A dataset written by ``RecordWriter`` is ``NAME-0000k-of-0000K.tfrecord`` shards and
``NAME.manifest.json`` (shard names and record counts, plus whatever its writer adds, e.g.
classes). Shards are written into a hidden temporary folder and moved into place when
complete, the manifest last: a killed writer never leaves output that looks finished.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from library.base.errors import RecordError, first_line
from library.base.files import remove_tree
from library.data.files import InputError, looks_like_tfrecord, match_files

MANIFEST_SUFFIX = ".manifest.json"


def feature(value: Any) -> tf.train.Feature:
    """A ``tf.train.Feature`` from a Python value or a list or array of them: integers and
    booleans as int64, floats as float, strings and bytes as bytes."""
    values = np.asarray(value).ravel().tolist() if not isinstance(value, (str, bytes)) else [value]
    if all(isinstance(v, (bool, int)) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    encoded = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=encoded))


def example(features: Mapping[str, Any]) -> bytes:
    """One serialized ``tf.train.Example`` of ``{key: value}`` (see ``feature``)."""
    built = {key: feature(value) for key, value in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=built)).SerializeToString()


def shard_names(name: str, num_shards: int) -> list[str]:
    return [f"{name}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def existing_outputs(out_dir: str, name: str) -> list[str]:
    """The shards and manifest of dataset ``name`` already in ``out_dir``."""
    if not tf.io.gfile.isdir(out_dir):
        return []
    return sorted(
        f
        for f in tf.io.gfile.listdir(out_dir)
        if (f.startswith(f"{name}-") and f.endswith(".tfrecord")) or f == name + MANIFEST_SUFFIX
    )


class RecordWriter:
    """Writes serialized records round-robin into ``num_shards`` shards of dataset ``name``
    in ``out_dir``; ``close()`` publishes them with the manifest, ``abort()`` leaves nothing.

    Args:
        out_dir: the folder of the dataset (created).
        name: the shards' prefix, e.g. ``train``.
        num_shards: how many shards (records go to them in turn).
        overwrite: replace an existing dataset of that name (else ``RecordError``).
    """

    def __init__(self, out_dir: str, name: str, num_shards: int, overwrite: bool = False):
        if num_shards < 1:
            raise RecordError(f"{name}: at least one shard, got {num_shards}")
        existing = existing_outputs(out_dir, name)
        if existing and not overwrite:
            raise RecordError(
                f"{os.path.join(out_dir, existing[0])}: exists; pass --overwrite to replace"
            )
        self.out_dir, self.name = out_dir, name
        self.names = shard_names(name, num_shards)
        self.temporary = self._temporary_dir()
        self.writers = [tf.io.TFRecordWriter(os.path.join(self.temporary, n)) for n in self.names]
        self.counts = [0] * num_shards
        self.written = 0

    def _temporary_dir(self) -> str:
        prefix = f".{self.name}.tmp-"
        try:
            tf.io.gfile.makedirs(self.out_dir)
            for leftover in tf.io.gfile.listdir(self.out_dir):  # of a killed writer
                if leftover.startswith(prefix):
                    remove_tree(os.path.join(self.out_dir, leftover.rstrip("/")))
            path = os.path.join(self.out_dir, f"{prefix}{os.getpid()}")
            tf.io.gfile.makedirs(path)
        except (OSError, tf.errors.OpError) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "message", str(error))
            raise RecordError(f"{self.out_dir}: cannot write ({reason})") from None
        return path

    def write(self, record: bytes) -> None:
        """Adds one serialized record (e.g. ``example({...})``) to the next shard."""
        shard = self.written % len(self.writers)
        self.writers[shard].write(record)
        self.counts[shard] += 1
        self.written += 1

    def close(self, extra_files: Mapping[str, str] | None = None, **manifest: Any) -> dict:
        """Publishes the shards, then ``extra_files`` (``{name: text}``, e.g. a labels file),
        then the manifest (``manifest`` adds keys to it); returns the manifest."""
        from library.base.files import atomic_write_text

        for writer in self.writers:
            writer.close()
        record = {
            "name": self.name,
            "num_records": self.written,
            "shards": [
                {"file": f, "num_records": n} for f, n in zip(self.names, self.counts, strict=True)
            ],
            **manifest,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        manifest_path = os.path.join(self.out_dir, self.name + MANIFEST_SUFFIX)
        try:
            if tf.io.gfile.exists(manifest_path):  # first: old shards without it look unfinished
                tf.io.gfile.remove(manifest_path)
            for old in existing_outputs(self.out_dir, self.name):
                tf.io.gfile.remove(os.path.join(self.out_dir, old))
            for shard in self.names:
                source, target = (os.path.join(p, shard) for p in (self.temporary, self.out_dir))
                tf.io.gfile.rename(source, target, overwrite=True)
            for name, text in (extra_files or {}).items():
                atomic_write_text(os.path.join(self.out_dir, name), text)
            atomic_write_text(manifest_path, json.dumps(record, indent=2) + "\n")
        finally:
            self.abort()
        return record

    def abort(self) -> None:
        """Removes the temporary folder (and what it holds)."""
        for writer in self.writers:
            writer.close()
        if tf.io.gfile.exists(self.temporary):
            remove_tree(self.temporary)


# -- what the engine needs to know about the files -------------------------------------------


def manifest_counts(files: Sequence[str]) -> dict[str, int]:
    """Record counts per shard from the ``*.manifest.json`` files beside the shards."""
    counts = {}
    for folder in sorted({os.path.dirname(f) for f in files}):
        for manifest_path in tf.io.gfile.glob(os.path.join(folder, "*" + MANIFEST_SUFFIX)):
            with tf.io.gfile.GFile(manifest_path) as stream:
                manifest = json.load(stream)
            for shard in manifest.get("shards", []):
                counts[os.path.join(folder, shard["file"])] = int(shard["num_records"])
    return counts


def count_records(file_pattern: str, read_shards: bool = True) -> int | None:
    """Records in the files of ``file_pattern``: from the manifests beside them, else by
    reading TFRecord files once (records of another tool; not with ``read_shards`` False);
    None when some file has neither a manifest nor TFRecord framing (a CSV file, say): only
    its reader knows."""
    files = match_files(file_pattern)
    known = manifest_counts(files)
    total = 0
    for path in files:
        if path in known:
            total += known[path]
            continue
        if not read_shards:
            return None
        with tf.io.gfile.GFile(path, "rb") as stream:
            if not looks_like_tfrecord(stream.read(12)):
                return None
        try:
            total += int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1))
        except tf.errors.DataLossError as error:
            raise InputError(
                f"{path}: corrupt or truncated shard ({first_line(error)}); "
                "re-create it, or set skip_corrupt_records: true to skip the damaged rest"
            ) from None
    return total


def manifest_paths(file_pattern: str) -> list[str]:
    """The manifests of the datasets ``file_pattern`` reads: the ``*.manifest.json`` beside
    its files that list one of them (a folder may hold the manifests of other splits too)."""
    files = set(match_files(file_pattern))
    found = []
    for folder in sorted({os.path.dirname(f) for f in files}):
        for path in tf.io.gfile.glob(os.path.join(folder, "*" + MANIFEST_SUFFIX)):
            with tf.io.gfile.GFile(path) as stream:
                shards = json.load(stream).get("shards", [])
            if any(os.path.join(folder, shard["file"]) in files for shard in shards):
                found.append(path)
    return found
