"""A run's own files, on any file system TensorFlow serves: atomic writes (nothing
half-written is ever visible under its final name), reads, appends.

Local paths go through ``os`` (fsync, then ``os.replace``); a path on another file system
(``gs://``, ``ram://``, ...) through ``tf.io.gfile``, imported only then, so that the
configuration, which reads and writes through here too, still answers before TensorFlow
loads. An append to a remote file is a rewrite of the whole file (object stores append
nothing): fine for the small records a run appends to.
"""

from __future__ import annotations

import contextlib
import os


def is_remote(path: str) -> bool:
    """Whether ``path`` names another file system than the local one (``scheme://...``)."""
    return "://" in path and not path.startswith("file://")


def atomic_write_text(path: str, text: str, durable: bool = True) -> None:
    """Writes ``text`` to a temporary name beside ``path``, then renames it into place."""
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_write_bytes(path: str, data: bytes, durable: bool = True) -> None:
    """Writes ``data`` to a temporary name beside ``path``, then renames it into place.

    ``durable`` False skips the fsync: the file survives the process being killed (the
    kernel holds it), not the machine losing power; for what is rewritten often, on the
    training step's path (the run state after each delivery, the heartbeat)."""
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
        if durable:
            stream.flush()
            os.fsync(stream.fileno())
    os.replace(temporary, path)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def read_text(path: str) -> str:
    """The text of ``path`` (``FileNotFoundError`` when there is none)."""
    if is_remote(path):
        if not _gfile().exists(path):
            raise FileNotFoundError(path)
        with _gfile().GFile(path) as stream:
            return stream.read()
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def append_text(path: str, text: str) -> None:
    """Appends ``text`` to ``path``, flushed to disk (a kill loses at most that text)."""
    if is_remote(path):
        before = read_text(path) if exists(path) else ""
        atomic_write_text(path, before + text)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def remove(path: str) -> None:
    if is_remote(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def temporary_folder(path: str) -> str:
    """A hidden sibling of the folder ``path`` to write it in first (``.NAME.tmp-PID``): not
    ``path`` followed by a suffix, which ``ram://`` would list as a child of ``path``."""
    parent, name = os.path.split(path.rstrip("/"))
    return os.path.join(parent, f".{name}.tmp-{os.getpid()}")


def move_tree(source: str, target: str) -> None:
    """Renames the folder ``source`` to ``target`` (which must not exist). On another file
    system than the local one its files are copied, then the source removed: object stores
    rename no folders (TensorFlow's ``ram://`` loses one it is asked to), so there the move is
    not atomic, though the target is complete before the source goes."""
    gfile = _gfile()
    if not is_remote(source):
        gfile.rename(source, target)
        return
    for folder, _, names in gfile.walk(source):
        into = target + folder[len(source.rstrip("/")) :]
        gfile.makedirs(into)
        for name in names:
            gfile.copy(f"{folder.rstrip('/')}/{name}", f"{into.rstrip('/')}/{name}")
    remove_tree(source)


def remove_tree(path: str) -> None:
    """Removes the folder ``path`` and what it holds, on any file system (``ram://`` cannot
    remove a folder whose subfolders were never made: its files go one by one there)."""
    gfile = _gfile()
    if not is_remote(path):
        gfile.rmtree(path)
        return
    for folder, _, names in list(gfile.walk(path, topdown=False)):
        for name in names:
            gfile.remove(f"{folder.rstrip('/')}/{name}")
        if gfile.exists(folder):
            with contextlib.suppress(Exception):  # an implicit folder: nothing to remove
                gfile.remove(folder)
