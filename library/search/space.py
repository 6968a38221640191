"""A search space declared in YAML (``search_space``), checked against the schema before
TensorFlow (or Optuna) loads. Each key of the configuration to search maps to one line::

    search_space:
      learning_rate: log 1e-4..1e-2     # a float on a log scale
      dropout_rate: 0..0.5              # a float, uniform
      train_batch_size: 16..64 step 16  # integers (step 1 when not given)
      encoder: small_cnn|resnet         # choices

Both ends of a range and every choice are checked as values of the key itself (its type, its
interval, its choices): a range the key cannot take is one line, exit status 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from library.config import ConfigError, Params, Schema

_RANGE = re.compile(r"^(log\s+)?(\S+)\s*\.\.\s*(\S+?)(?:\s+step\s+(\S+))?$")
NOT_SEARCHED = ("model_dir", "best_model_dir", "config_set", "hyperparameter_file")


@dataclass(frozen=True)
class Dimension:
    """One key's values: a range (``low``..``high``, maybe on a log scale, maybe by ``step``)
    or ``choices``."""

    name: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: tuple = ()

    def describe(self) -> str:
        if self.choices:
            return "|".join(map(str, self.choices))
        step = f" step {self.step}" if self.step is not None else ""
        return f"{'log ' if self.log else ''}{self.low}..{self.high}{step}"


def parse_space(params: Params) -> list[Dimension]:
    """The dimensions of ``params.search_space``, each checked against the schema.

    Raises:
        ConfigError: an unknown key, a malformed line, or values the key cannot take.
    """
    schema, dimensions = params.schema, []
    if not params.search_space:
        raise ConfigError(
            "--mode search needs search_space: KEY: 'LOW..HIGH', 'log LOW..HIGH', "
            "'LOW..HIGH step S' or 'A|B|C' for each key to search"
        )
    for name, text in params.search_space.items():
        where = f"search_space {name}"
        field = schema.by_name.get(name)
        if field is None:
            raise schema.unknown(name, "search_space")
        if name in NOT_SEARCHED or name.startswith("search_"):
            raise ConfigError(f"{where}: {name} is not searched (each trial has its own folder)")
        match = _RANGE.match(text.strip())
        if match is None:
            choices = tuple(schema.coerce(name, part.strip(), where) for part in text.split("|"))
            if len(choices) < 2:
                raise ConfigError(
                    f"{where}: {text!r} is no range or choice: use 'LOW..HIGH', "
                    "'log LOW..HIGH', 'LOW..HIGH step S' or 'A|B|C'"
                )
            dimensions.append(Dimension(name, choices=choices))
            continue
        if field.type not in (int, float):
            raise ConfigError(f"{where}: {name} is {field.type_name}: give choices, 'A|B|C'")
        log, low, high, step = match.groups()
        low, high = (schema.coerce(name, value, where) for value in (low, high))
        if not low < high:
            raise ConfigError(f"{where}: {text!r} needs LOW < HIGH")
        if log and low <= 0:
            raise ConfigError(f"{where}: a log scale needs LOW > 0, got {low}")
        if step is not None:
            step = schema.coerce(name, step, where)
            if step <= 0 or (log and step):
                raise ConfigError(f"{where}: step must be positive, and no step on a log scale")
        elif field.type is int and not log:
            step = 1
        dimensions.append(Dimension(name, low, high, bool(log), step))
    if not params.search_storage and "://" in params.model_dir:
        raise ConfigError(
            f"search_storage is empty and model_dir {params.model_dir} is remote: the default "
            "SQLite file needs a local folder; give search_storage an SQLAlchemy URL"
        )
    if params.search_sampler == "grid":
        ranged = [d.name for d in dimensions if not d.choices and d.step is None]
        if ranged:
            raise ConfigError(
                f"search_sampler grid needs choices or ranges with a step: {', '.join(ranged)}"
            )
    return dimensions


def grid(dimension: Dimension) -> list:
    """Every value of a dimension a grid visits: its choices, or its range by its step."""
    if dimension.choices:
        return list(dimension.choices)
    values, value = [], dimension.low
    while value <= dimension.high + abs(dimension.step) * 1e-9:
        values.append(value)
        value += dimension.step
    return values


def parse_sweep(text: str, schema: Schema) -> tuple[str, list[Any], bool]:
    """``KEY=V1,V2,...`` or ``KEY=START:STOP:FACTOR`` (a geometric range, both ends included)
    as ``(key, values, geometric)``; each value checked against the key's type and range."""
    key, separator, spec = text.partition("=")
    if not separator or not spec:
        raise ConfigError(f"--sweep {text}: use KEY=V1,V2,... or KEY=START:STOP:FACTOR")
    field = schema.by_name.get(key)
    if field is None:
        raise schema.unknown(key, "--sweep")
    geometric = spec.count(":") == 2 and field.type in (int, float)
    if geometric:
        try:
            start, stop, factor = (float(part) for part in spec.split(":"))
        except ValueError:
            raise ConfigError(f"--sweep {text}: START:STOP:FACTOR must be numbers") from None
        if start <= 0 or stop <= 0 or factor <= 0 or factor == 1:
            raise ConfigError(
                f"--sweep {text}: a geometric range needs positive numbers, FACTOR != 1"
            )
        raw: list[float | str] = []  # numbers here, the texts of a list below
        value = start
        rising = factor > 1
        while (value <= stop * (1 + 1e-9)) if rising else (value >= stop * (1 - 1e-9)):
            raw.append(float(f"{value:.6g}"))
            value *= factor
            if len(raw) > 100:
                raise ConfigError(f"--sweep {text}: more than 100 values")
    else:
        raw = [part.strip() for part in spec.split(",") if part.strip()]
    values = [schema.coerce(key, v, f"--sweep {key}") for v in raw]
    if not values:
        raise ConfigError(f"--sweep {text}: no values")
    return key, values, geometric


def label(key: str, value: Any) -> str:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{key}={shown}"
