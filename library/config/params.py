"""The keys of a run (``Schema``) and their resolved values (``Params``, frozen)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from library.config.options import RENAMED, RUN_OPTIONS
from library.config.schema import (
    HYPERPARAMETERS,
    PROJECT,
    ConfigError,
    Field,
    coerce,
    parse_interval,
    plain,
)


class Schema:
    """Every key of a run: the library's run options, the project's own run options (keys of
    project.yaml it declares, e.g. a kit's) and the project's hyperparameters."""

    def __init__(self, hyperparameters: Sequence[Field] = (), run_options: Sequence[Field] = ()):
        fields = [dataclasses.replace(f, file=PROJECT) for f in (*RUN_OPTIONS, *run_options)]
        fields += [dataclasses.replace(f, file=HYPERPARAMETERS) for f in hyperparameters]
        self.fields: tuple[Field, ...] = tuple(fields)
        self.by_name: dict[str, Field] = {}
        for field in self.fields:
            if field.name in self.by_name:
                raise ConfigError(f"key {field.name!r} is declared twice (a run option too?)")
            self.by_name[field.name] = field
            parse_interval(field)  # a malformed interval fails at import, not mid-run

    def defaults(self) -> dict[str, Any]:
        return {f.name: coerce(f, f.default, "schema") for f in self.fields}

    def file_fields(self, file: str) -> list[Field]:
        return [f for f in self.fields if f.file == file]

    def suggest(self, key: str, options: Sequence[str] | None = None) -> str:
        close = difflib.get_close_matches(key, options or list(self.by_name), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def unknown(self, key: str, where: str) -> ConfigError:
        if key in RENAMED:
            return ConfigError(f"{where}: key {key!r} is now called {RENAMED[key]!r}; rename it")
        hint = (
            self.suggest(key) or " (a new hyperparameter is declared in project/hyperparameters.py)"
        )
        return ConfigError(f"{where}: unknown key {key!r}{hint}")

    def coerce(self, key: str, value: Any, where: str) -> Any:
        field = self.by_name.get(key)
        if field is None:
            raise self.unknown(key, where)
        return coerce(field, value, where)


class Params(Mapping):
    """The resolved configuration: a read-only mapping with attribute access."""

    def __init__(self, values: Mapping[str, Any], config_set: str = "default", schema=None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "config_set", config_set)
        object.__setattr__(self, "schema", schema or Schema())

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(
                f"params has no key {key!r}{self.schema.suggest(key)}; "
                "declare new hyperparameters in project/hyperparameters.py"
            ) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise TypeError("params are frozen: use params.replace(key=value) for a modified copy")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def replace(self, **changes: Any) -> Params:
        """A copy with ``changes`` applied (checked against the schema)."""
        values = dict(self._values)
        for key, value in changes.items():
            values[key] = self.schema.coerce(key, value, "replace()")
        return Params(values, self.config_set, self.schema)

    def section(self, file: str) -> dict[str, Any]:
        """The keys that belong to ``file`` (PROJECT or HYPERPARAMETERS), as plain YAML data."""
        return {f.name: plain(self._values[f.name]) for f in self.schema.file_fields(file)}


def default_params(
    hyperparameters: Sequence[Field] = (), run_options: Sequence[Field] = (), **overrides: Any
) -> Params:
    """The schema's defaults with ``overrides`` applied: for notebooks and tests."""
    schema = Schema(hyperparameters, run_options)
    return Params(schema.defaults(), schema=schema).replace(**overrides)
