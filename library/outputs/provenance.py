"""Provenance: what code, software and data each start of a run used, in
``model_dir/provenance.json``; a resume that differs says how, one line per difference."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

from library.base.files import atomic_write_text, exists, is_remote, read_text

PROVENANCE_FILE = "provenance.json"


def git_state(directory: str) -> dict:
    """The commit of the repository holding ``directory`` and whether its tree is dirty.

    Asked once per process and folder: the code that runs is what the process imported when
    it started, whatever is committed later (a sweep, a notebook).
    """
    return dict(_git_state(directory))


@functools.cache
def _git_state(directory: str) -> dict:

    def git(*argv: str) -> str:
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["git", "-C", directory, *argv],  # noqa: S607 - git from PATH, as a user runs it
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode:
            raise OSError(result.stderr.strip())
        return result.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    if is_remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as stream:
            digest.update(stream.read())
        return digest.hexdigest()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def collect(project_dir: str, manifests: Iterable[str]) -> dict:
    """This start's provenance: code, software, command, host and data (manifest hashes)."""
    import keras
    import numpy
    import tensorflow as tf

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_state(project_dir),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": numpy.__version__,
        },
        "command": sys.argv,
        "host": socket.gethostname(),
        "data": {path: sha256(path) for path in sorted(set(manifests)) if exists(path)},
    }


def differences(before: dict, now: dict) -> list[str]:
    """One line per difference that could change what trains: data, code, versions."""
    lines = []
    for path in sorted(set(before.get("data", {})) | set(now.get("data", {}))):
        old, new = before.get("data", {}).get(path), now.get("data", {}).get(path)
        if old != new:
            what = "is new" if old is None else "is gone" if new is None else "changed"
            lines.append(f"training data changed: {path} {what} since the last start")
    old_git, new_git = before.get("git", {}), now.get("git", {})
    if old_git.get("commit") != new_git.get("commit"):
        lines.append(f"code changed: commit {old_git.get('commit')} -> {new_git.get('commit')}")
    elif new_git.get("dirty") and not old_git.get("dirty"):
        lines.append("code changed: uncommitted changes since the last start")
    for name, version in now.get("versions", {}).items():
        if before.get("versions", {}).get(name) != version:
            lines.append(f"{name} changed: {before.get('versions', {}).get(name)} -> {version}")
    return lines


def record(
    model_dir: str,
    project_dir: str,
    manifests: Iterable[str],
    step: int,
    say: Callable[[str], None] = print,
) -> dict:
    """Appends this start to ``provenance.json`` (atomically) and says what differs from the
    previous start."""
    path = os.path.join(model_dir, PROVENANCE_FILE)
    history = []
    if exists(path):
        try:
            history = json.loads(read_text(path)).get("starts", [])
        except (OSError, ValueError, AttributeError):
            history = []
    now = dict(collect(project_dir, manifests), step=step)
    if history and step > 0:
        for line in differences(history[-1], now):
            say(f"note: {line}")
    history.append(now)
    atomic_write_text(path, json.dumps({"starts": history}, indent=2) + "\n")
    return now
