"""tf-scaffold's library: the machinery behind ``run.py``, task-neutral, never edited by a
project (``library/contract.py`` says what a project provides).

    config/     the YAML sets, strict keys, frozen params      contract.py  the project contract
    data/       files, tf.data blocks, a record writer, readers, the tf.data service
    engine/     Estimator, trainer, steps, loop, evaluator, schedule, distribution
    recorders/  what happens with each log and evaluation (a project adds its own)
    outputs/    checkpoints, the best checkpoint, export, atomic writes, lock, provenance
    transfer/   warm start, learning-rate multipliers, hub modules
    search/     sweeps over a hyperparameter
    cli/        run.py's modes
    vision/     the image-classification kit (the core never imports it)

The names below are the public API; they load on first use, so that ``import library`` (and
the configuration, which ``--help`` needs) costs no TensorFlow import.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    # the contract and the configuration
    "Functions": "library.contract",
    "ModeKeys": "library.contract",
    "Field": "library.config",
    "Params": "library.config",
    "ConfigError": "library.config",
    "default_params": "library.config",
    "resolve": "library.config",
    # the engine
    "Estimator": "library.engine.estimator",
    "TrainSpec": "library.engine.estimator",
    "EvalSpec": "library.engine.estimator",
    "train_and_evaluate": "library.engine.estimator",
    "Plan": "library.engine.schedule",
    "make_plan": "library.engine.schedule",
    "Selected": "library.engine.metrics",
    # recorders
    "Action": "library.recorders.base",
    "Recorder": "library.recorders.base",
    "Evaluation": "library.recorders.base",
    "Run": "library.recorders.base",
    "CSVLogger": "library.recorders.csv_logger",
    # data
    "read_records": "library.data.pipeline",
    "replica_batch_size": "library.data.pipeline",
    "random_seeds": "library.data.pipeline",
    "RecordWriter": "library.data.records",
    "example": "library.data.records",
    # the command line
    "main": "library.cli",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'library' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__():
    return __all__
