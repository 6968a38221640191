"""Strict YAML configuration: named sets, anchors, command-line overrides, frozen params.

Two files hold the configuration, each as named sets (top-level keys):

* ``project.yaml``: run options (data, durations, folders, checkpointing), declared in
  ``options.py``: they belong to the library (a project may declare more).
* ``hyperparameters.yaml``: model hyperparameters, declared by the project
  (``project/hyperparameters.py``): a new encoder with a new hyperparameter never edits
  ``library/``.

A set inherits from another through a YAML anchor (``<<: *DEFAULT``) and overrides only what
differs. ``--config_set NAME`` picks the project set; its ``hyperparameter_set`` picks the
hyperparameter set. Any key can then be overridden on the command line (``--learning_rate
0.0001``; lists and mappings in YAML flow syntax: ``--lr_boundaries "[2, 4]"``).

Every key has a type, a default, a help line and optionally choices or an interval; an unknown
key, a wrong type or a value out of range is an error. Nothing here imports TensorFlow, so
that ``--help`` and configuration errors answer instantly.

    schema.py   Field and the checks of one value      params.py    Schema, Params (frozen)
    options.py  the library's run options (RUN_OPTIONS) sets.py      YAML files of named sets
    resolve.py  command line + sets -> Params           history.py   the config kept in model_dir
    reference.py  the generated reference (make docs)
"""

from library.config.history import CHANGES_FILE, configuration_in_force, save_config, to_yaml
from library.config.options import MODES, RENAMED, RUN_OPTIONS, TRAINING_MODES
from library.config.params import Params, Schema, default_params
from library.config.resolve import OneLineParser, build_arg_parser, resolve
from library.config.schema import (
    HYPERPARAMETERS,
    PROJECT,
    ConfigError,
    Field,
    FrozenMap,
    coerce,
    plain,
)
from library.config.sets import dump_yaml, load_sets, select_set

__all__ = [
    "CHANGES_FILE",
    "HYPERPARAMETERS",
    "MODES",
    "PROJECT",
    "RENAMED",
    "RUN_OPTIONS",
    "TRAINING_MODES",
    "ConfigError",
    "Field",
    "FrozenMap",
    "OneLineParser",
    "Params",
    "Schema",
    "build_arg_parser",
    "coerce",
    "configuration_in_force",
    "default_params",
    "dump_yaml",
    "load_sets",
    "plain",
    "resolve",
    "save_config",
    "select_set",
    "to_yaml",
]
