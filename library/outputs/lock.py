"""One writer per output folder: a lock file created atomically, naming its holder."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable

from library.base.errors import LockError


class FolderLock:
    """Holds ``<folder>/<name>`` (host, pid, start time, command) while a run writes there.

    A lock left by a dead process on this host is taken over with a note; a lock held by a
    live process, or by another host (which cannot be checked from here), is an error. Only
    local folders can be locked (``gs://`` and the like are written without a lock).
    """

    def __init__(self, folder: str, name: str = ".lock", say: Callable[[str], None] = print):
        self.path = os.path.join(folder, name)
        self.folder, self.say = folder, say
        self.held = False

    def acquire(self) -> FolderLock:
        if "://" in self.folder:
            return self
        os.makedirs(self.folder, exist_ok=True)
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        }
        # The record is written first and linked into place: link fails if the lock exists,
        # and a process killed at any moment leaves either no lock or a whole one.
        staged = f"{self.path}.{os.getpid()}.tmp"
        with open(staged, "w", encoding="utf-8") as stream:
            json.dump(record, stream)
        try:
            for _ in range(2):
                try:
                    _link_or_create(staged, self.path, record)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                self.held = True
                return self
        finally:
            os.remove(staged)
        raise LockError(f"{self.path}: could not be taken")

    def _take_over_if_stale(self) -> None:
        holder = self._holder()
        same_host = holder.get("host") == socket.gethostname()
        if holder and not (same_host and not _alive(holder.get("pid"))):
            where = "" if same_host else f" on {holder.get('host')}"
            raise LockError(
                f"{self.folder} is in use by another run (pid {holder.get('pid')}{where}, "
                f"started {holder.get('started')}: {holder.get('command', '?')}); "
                f"wait for it, or choose another folder (if no such run exists, delete {self.path})"
            )
        self.say(
            f"note: taking over the lock of a run that is gone (pid {holder.get('pid')}, "
            f"started {holder.get('started')})"
            if holder
            else f"note: replacing an unreadable lock file {self.path}"
        )
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def _holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as stream:
                holder = json.load(stream)
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.held:
            self.held = False
            if self._holder().get("pid") == os.getpid():
                os.remove(self.path)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _link_or_create(staged: str, path: str, record: dict) -> None:
    """``path`` made, whole, from ``staged``; FileExistsError if it exists. Where the file
    system has no hard links, an exclusive create written at once (a kill in between leaves
    an empty lock, which the next run replaces with a note)."""
    try:
        os.link(staged, path)
    except FileExistsError:
        raise
    except OSError:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(record, stream)


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
