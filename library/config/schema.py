"""The types of configuration keys: ``Field`` (type, default, help, choices or interval) and
the checks that turn a YAML or command-line value into a frozen value of its type."""

from __future__ import annotations

import difflib
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml

from library.base.errors import ConfigError

PROJECT = "project"
HYPERPARAMETERS = "hyperparameters"


@dataclass(frozen=True)
class Field:
    """One configuration key.

    Args:
        name: the key, as written in YAML and as ``--name`` on the command line.
        type: ``str``, ``int``, ``float``, ``bool``, ``list[T]`` or ``dict[str, T]``.
        default: its value when no set gives one.
        help: one line for ``--help`` and the configuration reference (docs/configuration.md).
        choices: the allowed values (strings), checked with a did-you-mean.
        interval: the allowed range of a number (or of each item of a list or mapping), as
            ``"[0, 1)"`` or ``"(0, inf)"``; square brackets include the bound.
    """

    name: str
    type: Any
    default: Any
    help: str
    choices: tuple = ()
    interval: str = ""
    file: str = HYPERPARAMETERS  # set by Schema: which YAML file the key belongs in

    @property
    def type_name(self) -> str:
        origin = typing.get_origin(self.type)
        if origin is None:
            return self.type.__name__
        return f"{origin.__name__}[{', '.join(a.__name__ for a in typing.get_args(self.type))}]"


class FrozenMap(Mapping):
    """A read-only mapping (a YAML mapping value in frozen params)."""

    def __init__(self, values: Mapping):
        self._values = MappingProxyType(dict(values))

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return repr(dict(self._values))

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self._values) == dict(other)

    def __hash__(self):
        return hash(tuple(sorted(self._values.items())))


def plain(value: Any) -> Any:
    """A frozen value as plain YAML data (tuples as lists, frozen mappings as dicts)."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def python_value(value: Any) -> Any:
    """numpy's scalars and arrays (what a ``prepare_fn`` may compute: ``np.str_``,
    ``np.int64``, an array of tokens) as Python's own values, which YAML and JSON write."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _scalar(kind: type, value: Any) -> Any:
    """``value`` as ``kind``; strings (from flags, or PyYAML's 1e-4) are parsed."""
    value = python_value(value)
    if kind is bool:
        return value if isinstance(value, bool) else parse_bool(value)
    if isinstance(value, bool):
        raise ValueError
    if kind is float:
        if not isinstance(value, (int, float, str)):
            raise ValueError
        result = float(value)
        if math.isnan(result):
            raise ValueError
        return result
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, (int, str)):
            raise ValueError
        return int(value)
    if not isinstance(value, str):
        raise ValueError
    return value


def _structure(value: Any, container: type) -> Any:
    """A list or mapping given as YAML flow text on the command line, parsed safely."""
    value = python_value(value)
    if isinstance(value, str):
        try:
            value = yaml.load(value, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError:
            raise ValueError from None
    if not isinstance(value, container):
        raise ValueError
    return value


def coerce(field: Field, value: Any, where: str) -> Any:
    """Checks ``value`` against ``field`` (type, choices, interval); returns it frozen."""
    origin = typing.get_origin(field.type)
    result: Any  # a tuple, a FrozenMap or a scalar
    items: tuple[Any, ...]  # the scalars it holds
    try:
        if origin is list:
            (item,) = typing.get_args(field.type)
            result = tuple(_scalar(item, v) for v in _structure(value, list))
            items = result
        elif origin is dict:
            _, item = typing.get_args(field.type)
            mapping = _structure(value, dict)
            if not all(isinstance(k, str) for k in mapping):
                raise ValueError
            result = FrozenMap({k: _scalar(item, v) for k, v in mapping.items()})
            items = tuple(result.values())
        else:
            result = _scalar(field.type, value)
            items = (result,)
    except ValueError:
        sample = "'x'" if typing.get_args(field.type)[-1:] == (str,) else "1"
        example = {list: " in YAML flow syntax, e.g. [1, 2]", dict: f" such as {{'a': {sample}}}"}
        raise ConfigError(
            f"{where}: {field.name} must be {field.type_name}{example.get(origin, '')}, "
            f"got {plain(value)!r}"
        ) from None
    if field.choices and result not in field.choices:
        hint = ""
        close = difflib.get_close_matches(str(result), [str(c) for c in field.choices], n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        raise ConfigError(
            f"{where}: {field.name} must be one of {', '.join(map(str, field.choices))}, "
            f"got {result!r}{hint}"
        )
    if field.interval:
        low, high, closed_low, closed_high = parse_interval(field)
        for number in items:
            inside = (number >= low if closed_low else number > low) and (
                number <= high if closed_high else number < high
            )
            if not inside:
                raise ConfigError(
                    f"{where}: {field.name} must be in {field.interval}, got {plain(result)!r}"
                )
    return result


_INTERVAL = re.compile(r"^([\[(])\s*(-?[\w.]+)\s*,\s*(-?[\w.]+)\s*([\])])$")


def parse_interval(field: Field) -> tuple[float, float, bool, bool]:
    if not field.interval:
        return -math.inf, math.inf, False, False
    match = _INTERVAL.match(field.interval)
    if not match:
        raise ValueError(f"{field.name}: malformed interval {field.interval!r}")
    opening, low, high, closing = match.groups()
    return float(low), float(high), opening == "[", closing == "]"


def constraint(field: Field) -> str:
    """``" [a|b]"`` or ``" in [0, 1)"``: a field's choices or interval, for help texts."""
    if field.choices:
        return f" [{'|'.join(map(str, field.choices))}]"
    return f" in {field.interval}" if field.interval else ""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
