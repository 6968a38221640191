"""YAML files of named sets, read safely (duplicate keys and unsafe tags are errors)."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from library.base.errors import first_line
from library.base.files import read_text
from library.config.schema import ConfigError, StrictLoader


class _Dumper(yaml.SafeDumper):
    """Block-style YAML, except lists, which read better in one line: ``[2, 4]``."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def load_sets(path: str) -> dict[str, dict[str, Any]]:
    """Reads a YAML file of named sets safely, one clear line per problem."""
    try:
        text = read_text(path)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: file not found (check the path or create it)") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or first_line(error)
        if "could not determine a constructor" in problem:
            problem += " (unsafe or unknown YAML tag: only plain YAML is allowed)"
        raise ConfigError(f"{path}{line}: {problem}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: must be a mapping of set names to mappings of keys")
    return data


def select_set(sets: dict[str, dict], name: str, path: str) -> dict[str, Any]:
    if name not in sets:
        close = difflib.get_close_matches(name, sets, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{path}: unknown set {name!r}{hint}; sets: {', '.join(sets)}")
    return sets[name]
