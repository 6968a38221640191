"""Atomic writes: nothing half-written is ever visible under its final name.

Every text output of a run goes through here. Local paths are written with ``os`` (fsync,
then ``os.replace``); a path on another file system TensorFlow serves (``gs://``, ``ram://``,
...) goes through ``tf.io.gfile``, imported only then, so that the configuration, which
writes through here too, still answers before TensorFlow loads.
"""

from __future__ import annotations

import os


def is_remote(path: str) -> bool:
    """Whether ``path`` names another file system than the local one (``scheme://...``)."""
    return "://" in path and not path.startswith("file://")


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to a temporary name beside ``path``, then renames it into place."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to a temporary name beside ``path``, then renames it into place."""
    temporary = f"{path}.tmp-{os.getpid()}"
    if is_remote(path):
        import tensorflow as tf

        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(temporary, "wb") as stream:
            stream.write(data)
        tf.io.gfile.rename(temporary, path, overwrite=True)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(temporary, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
