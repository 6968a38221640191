"""The dataset: the docstrings of eight packages of Python's standard library, each labelled
by its package, as records of the library's writer (no TensorFlow until they are written).

A text is one docstring (of a module, or of a class, function or method defined in the
package), its whitespace collapsed. Shorter than ``MIN_WORDS`` words ("Close the file.") it
says nothing of its package and is dropped; a text that two packages share belongs to neither
and is dropped too; every text is kept once. A hash of the text decides its split: the same
on every machine and in every run, and no text is in two splits.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import pkgutil
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType

from . import LABEL, TEXT

PACKAGES = (
    "asyncio",
    "email",
    "http",
    "importlib",
    "logging",
    "multiprocessing",
    "unittest",
    "xml",
)
MIN_WORDS = 4
SHARES = {"test": 15, "validation": 15, "train": 70}  # percent of the texts, by hash
JSON_LINES = "test.jsonl"


def submodules(package: str) -> list[ModuleType]:
    """The package and each of its submodules that imports on this platform, without its
    tests and ``__main__`` (importing ``unittest.__main__`` would run a test program)."""
    root = importlib.import_module(package)
    found = [root]
    names = pkgutil.walk_packages(
        getattr(root, "__path__", []), f"{package}.", onerror=lambda name: None
    )
    for info in names:
        parts = info.name.split(".")
        if "__main__" in parts or any(part.startswith("test") for part in parts[1:]):
            continue
        try:
            found.append(importlib.import_module(info.name))
        except ImportError:  # another platform's module (asyncio.windows_events)
            continue
    return found


def defined_in(thing, package: str) -> bool:
    module = getattr(thing, "__module__", None) or ""
    return module == package or module.startswith(f"{package}.")


def docstrings(module: ModuleType, package: str) -> Iterator[str | None]:
    """The docstrings of ``module`` and of the classes, functions and methods in it that the
    package defines (one re-exported comes again in each module that imports it; its text
    is kept once)."""
    yield module.__doc__
    for thing in vars(module).values():
        if not (inspect.isclass(thing) or inspect.isfunction(thing)):
            continue
        if not defined_in(thing, package):
            continue
        yield thing.__doc__
        if inspect.isclass(thing):
            for member in vars(thing).values():
                # A property's text is its getter's; a static or class method wraps its own.
                member = member.fget if isinstance(member, property) else member
                member = getattr(member, "__func__", member)
                if inspect.isfunction(member) and defined_in(member, package):
                    yield member.__doc__


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_of(text: str) -> str:
    """``train``, ``validation`` or ``test``, by a hash of the text (``SHARES``)."""
    bucket, bound = int(digest(text)[:8], 16) % 100, 0
    for split, share in SHARES.items():
        bound += share
        if bucket < bound:
            return split
    return "train"


def collect(packages: Sequence[str] = PACKAGES) -> list[tuple[str, int]]:
    """``(text, class id)`` of every kept docstring (the id indexes ``packages``), in the
    order of their hashes: a deterministic shuffle, so that the first few of each class
    are a fair sample."""
    owners: dict[str, set[int]] = {}
    with warnings.catch_warnings():
        # Deprecated modules warn as they import; here they are only text.
        warnings.simplefilter("ignore")
        for label, package in enumerate(packages):
            for module in submodules(package):
                for doc in docstrings(module, package):
                    text = " ".join(doc.split()) if isinstance(doc, str) else ""
                    if len(text.split()) >= MIN_WORDS:
                        owners.setdefault(text, set()).add(label)
    rows = [(text, labels.pop()) for text, labels in owners.items() if len(labels) == 1]
    return sorted(rows, key=lambda row: digest(row[0]))


def splits(
    rows: Sequence[tuple[str, int]], per_class: Mapping[str, int] | None = None
) -> dict[str, list[tuple[str, int]]]:
    """``rows`` by split; with ``per_class``, only the first so many of each class there."""
    found: dict[str, list[tuple[str, int]]] = {split: [] for split in SHARES}
    for text, label in rows:
        found[split_of(text)].append((text, label))
    if per_class is None:
        return found
    kept = {}
    for split, members in found.items():
        taken: Counter = Counter()
        kept[split] = []
        for text, label in members:
            if taken[label] < per_class.get(split, 0):
                kept[split].append((text, label))
                taken[label] += 1
    return kept


def write_records(
    folder: str, name: str, rows: Sequence[tuple[str, int]], packages: Sequence[str] = PACKAGES
) -> int:
    """``rows`` as records ``{text, module}`` of the library's writer (2 shards); the
    manifest lists the classes, which ``prepare_fn`` reads. Returns the count."""
    from library import RecordWriter, example

    writer = RecordWriter(folder, name, num_shards=2, overwrite=True)
    for text, label in rows:
        writer.write(example({TEXT: text, LABEL: label}))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    source = f"docstrings of Python {version}'s standard library"
    return writer.close(classes=list(packages), source=source)["num_records"]


def write_json_lines(
    path: str, rows: Sequence[tuple[str, int]], packages: Sequence[str] = PACKAGES
) -> str:
    """``rows`` as JSON lines ``{"text": ..., "module": name}``: predict reads the text by
    its key and leaves the true package for the figures."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps({TEXT: t, LABEL: packages[k]}) + "\n" for t, k in rows)
    return path


def write_dataset(
    folder: str, per_class: Mapping[str, int] | None = None
) -> dict[str, dict[str, int]]:
    """The three splits as records (``train``, ``validation``, ``test``) in ``folder``, and
    the test split again as JSON lines (``test.jsonl``) to predict; with ``per_class``, the
    first so many texts of each class in each split. Returns the counts by split and class."""
    by_split = splits(collect(), per_class)
    counts = {}
    for split, rows in by_split.items():
        write_records(folder, split, rows)
        counts[split] = {PACKAGES[k]: n for k, n in sorted(Counter(k for _, k in rows).items())}
    write_json_lines(os.path.join(folder, JSON_LINES), by_split["test"])
    return {split: counts[split] for split in ("train", "validation", "test")}
