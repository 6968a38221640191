"""tf-scaffold's library: the machinery behind ``run.py``, task-neutral, never edited by a
project (``library/contract.py`` says what a project provides).

    config/     the YAML sets, strict keys, frozen params      contract.py  the project contract
    data/       files, tf.data blocks, a record writer, readers, the tf.data service
    engine/     Estimator, trainer, the update (a project's own or the default), steps,
                loop, evaluator, schedule, distribution
    recorders/  what happens with each log and evaluation (a project adds its own)
    outputs/    checkpoints, the best checkpoint, export, atomic writes, lock, provenance
    transfer/   warm start, learning-rate multipliers, hub modules
    search/     sweeps over a hyperparameter
    cli/        run.py's modes
    vision/     the image-classification kit (the core never imports it)

The names below are the public API: ``project/``, the examples and the docs import from
``library`` (and from the kit, ``library.vision``). They load on first use, so that ``import
library`` (and the configuration, which ``--help`` needs) costs no TensorFlow import; the
``TYPE_CHECKING`` block shows them to type checkers and IDEs as plain imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from library.base.errors import (
        CheckpointError,
        CompileError,
        ConfigError,
        DataServiceError,
        DivergedError,
        ExportError,
        HubError,
        InputError,
        Interrupted,
        LockError,
        NotRestorableError,
        PlanError,
        ProjectError,
        RecordError,
        StrategyError,
        TransferError,
        UserError,
    )
    from library.base.quiet import (
        import_tensorflow,
    )
    from library.cli import (
        main,
    )
    from library.config import (
        Field,
        Params,
        default_params,
        resolve,
    )
    from library.contract import (
        Functions,
        ModeKeys,
        Project,
    )
    from library.data.pipeline import (
        random_seeds,
        read_records,
        replica_batch_size,
    )
    from library.data.records import (
        RecordWriter,
        count_records,
        example,
        manifest_paths,
    )
    from library.engine.estimator import (
        Estimator,
        EvalSpec,
        TrainSpec,
        train_and_evaluate,
    )
    from library.engine.metrics import (
        Selected,
    )
    from library.engine.schedule import (
        Plan,
        make_plan,
    )
    from library.engine.update import DefaultStep, TrainingStep
    from library.recorders.base import (
        Action,
        Evaluation,
        Recorder,
        Run,
    )
    from library.recorders.csv_logger import (
        CSVLogger,
    )
    from library.recorders.metrics_log import (
        read_metrics,
    )
    from library.recorders.mlflow_logger import (
        MLflowLogger,
    )
    from library.recorders.plots import (
        save_figure,
    )
    from library.transfer.hub import (
        HubModule,
        encoder_of,
        export_module,
    )

_PUBLIC = {
    # the contract
    "Functions": "library.contract",
    "ModeKeys": "library.contract",
    "Project": "library.contract",
    # the configuration
    "Field": "library.config",
    "Params": "library.config",
    "default_params": "library.config",
    "resolve": "library.config",
    # the errors a user meets (all but the last two are UserError: one line, exit 2)
    "UserError": "library.base.errors",
    "ConfigError": "library.base.errors",
    "ProjectError": "library.base.errors",
    "InputError": "library.base.errors",
    "RecordError": "library.base.errors",
    "PlanError": "library.base.errors",
    "CheckpointError": "library.base.errors",
    "NotRestorableError": "library.base.errors",
    "ExportError": "library.base.errors",
    "LockError": "library.base.errors",
    "TransferError": "library.base.errors",
    "HubError": "library.base.errors",
    "StrategyError": "library.base.errors",
    "CompileError": "library.base.errors",
    "DataServiceError": "library.base.errors",
    "DivergedError": "library.base.errors",
    "Interrupted": "library.base.errors",
    # the engine
    "Estimator": "library.engine.estimator",
    "TrainSpec": "library.engine.estimator",
    "EvalSpec": "library.engine.estimator",
    "train_and_evaluate": "library.engine.estimator",
    "Plan": "library.engine.schedule",
    "make_plan": "library.engine.schedule",
    "Selected": "library.engine.metrics",
    "TrainingStep": "library.engine.update",
    "DefaultStep": "library.engine.update",
    # recorders
    "Action": "library.recorders.base",
    "Recorder": "library.recorders.base",
    "Evaluation": "library.recorders.base",
    "Run": "library.recorders.base",
    "CSVLogger": "library.recorders.csv_logger",
    "MLflowLogger": "library.recorders.mlflow_logger",
    "read_metrics": "library.recorders.metrics_log",
    "save_figure": "library.recorders.plots",
    # data
    "read_records": "library.data.pipeline",
    "replica_batch_size": "library.data.pipeline",
    "random_seeds": "library.data.pipeline",
    "RecordWriter": "library.data.records",
    "example": "library.data.records",
    "count_records": "library.data.records",
    "manifest_paths": "library.data.records",
    # transfer
    "HubModule": "library.transfer.hub",
    "encoder_of": "library.transfer.hub",
    "export_module": "library.transfer.hub",
    # the command line, and TensorFlow imported without its start-up chatter
    "main": "library.cli",
    "import_tensorflow": "library.base.quiet",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'library' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return __all__
