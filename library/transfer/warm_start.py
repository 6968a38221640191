"""Warm start (a new run's variables from a checkpoint or SavedModel, by name through a name
map) and learning-rate multipliers per variable (0 freezes)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping

import keras
import numpy as np

from library.transfer.names import (
    TransferError,
    is_weight,
    read_source,
    tensorflow_names,
    variable_names,
)


def _source_name(name: str, name_map: Mapping[str, str]) -> str:
    for pattern, replacement in name_map.items():
        if re.search(pattern, name):
            try:
                return re.sub(pattern, replacement, name)
            except re.error as error:
                raise TransferError(
                    f"warm_start_name_map: {pattern!r} -> {replacement!r} ({error})"
                ) from None
    return name


def warm_start(
    model: keras.Model,
    source_path: str,
    select: str = ".*",
    name_map: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Copies into ``model`` the variables whose name matches ``select`` from ``source_path``.

    Each selected name is looked up in the source after the first pattern of ``name_map`` that
    matches it has rewritten it (``re.sub``); unmapped names are looked up as they are. All are
    checked before any is assigned, so a failed warm start changes nothing.

    Returns:
        The number of variables copied.

    Raises:
        TransferError: a selected variable has no source or another shape (named).
    """
    name_map = dict(name_map or {})
    source = read_source(source_path)
    names = variable_names(model)
    chosen = [
        (name, variable)
        for name, variable in zip(names, model.variables, strict=True)
        if is_weight(name) and re.search(select, name)
    ]
    if not chosen:
        raise TransferError(f"warm_start_vars {select!r} matches none of the model's variables")
    # Our own checkpoints name a module's variables as the module does ("conv2d/kernel" for
    # "hub/conv2d/kernel"): their TensorFlow names are the second place to look.
    tensorflow = dict(zip(names, tensorflow_names(model.variables), strict=True))
    values = []
    for name, variable in chosen:
        wanted = _source_name(name, name_map)
        if wanted not in source.keys and not name_map and tensorflow[name] in source.keys:
            wanted = tensorflow[name]
        if wanted not in source.keys:
            close = _closest(wanted, source.keys)
            raise TransferError(
                f"warm start: {name} (looked up as {wanted!r}) is not in {source.path}{close}; "
                "map it with warm_start_name_map or leave it out with warm_start_vars"
            )
        if list(source.shape(wanted)) != list(variable.shape):
            raise TransferError(
                f"warm start: {name} has shape {list(variable.shape)} but {wanted} in "
                f"{source.path} has {list(source.shape(wanted))}"
            )
        values.append(source.value(wanted))
    for (_, variable), value in zip(chosen, values, strict=True):
        variable.assign(value.astype(variable.dtype))
    parameters = sum(int(np.prod(variable.shape)) for _, variable in chosen)
    weights = sum(is_weight(name) for name in names)
    say(
        f"warm start: {len(chosen)} of {weights} variables ({parameters:,} "
        f"parameters) from {source.path} ({source.kind}); the rest start fresh"
    )
    return len(chosen)


def _closest(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f" (closest: {close[0]!r})" if close else ""


# -- learning-rate multipliers ---------------------------------------------------------------


def update_scales(
    model: keras.Model, lr_mult: Mapping[str, float], say: Callable[[str], None] = print
) -> tuple[list, list[float]]:
    """The variables that train and the factor on each one's update, from ``lr_mult``.

    The first pattern that matches a trainable variable's name gives its factor (1 when none
    does); a factor of 0 freezes it: it is left out of the gradient computation. Says how
    many variables and parameters each pattern covers.
    """
    names = dict(zip((v.path for v in model.variables), variable_names(model), strict=True))
    variables, scales = [], []
    covered: dict[str, list[int]] = {pattern: [0, 0] for pattern in lr_mult}
    for variable in model.trainable_variables:
        name = names[variable.path]
        factor = 1.0
        for pattern, multiplier in lr_mult.items():
            if re.search(pattern, name):
                factor = float(multiplier)
                covered[pattern][0] += 1
                covered[pattern][1] += int(np.prod(variable.shape))
                break
        if factor != 0.0:
            variables.append(variable)
            scales.append(factor)
    if not variables:
        raise TransferError(
            "nothing trains: lr_mult and the layers the model freezes leave no variable to train"
        )
    for pattern, (count, parameters) in covered.items():
        if not count:
            raise TransferError(
                f"lr_mult: {pattern!r} matches no trainable variable, or only ones an earlier "
                "pattern took (see --mode inspect)"
            )
        say(
            f"lr_mult {pattern!r}: x{lr_mult[pattern]:g} on {count} variables ({parameters:,} "
            "parameters)"
        )
    return variables, scales
