"""Runs side by side in TensorBoard's HParams dashboard: each run's hyperparameters (and the
run options that shape training) as a session of the HParams plugin in ``model_dir``, and its
best ``best_metric`` so far (``eval/best/<metric>``) beside the evaluation scalars."""

from __future__ import annotations

import json

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from library.config import HYPERPARAMETERS, PROJECT
from library.recorders.base import Evaluation, Recorder, Run

# The run options that change what trains, shown beside the hyperparameters.
RUN_KEYS = (
    "train_batch_size",
    "train_epochs",
    "train_steps",
    "mixed_precision",
    "warm_start_from",
    "best_metric",
    "random_seed",
)


def hparam_value(value):
    """A value the HParams plugin takes (bool, int, float, str): lists and mappings as JSON."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


class HParams(Recorder):
    """Writes the session of this run at its start; the best metric at each new best."""

    def __init__(self):
        self.writer = None
        self.metric = "loss"

    def start(self, run: Run) -> None:
        params = run.params
        values = dict(params.section(HYPERPARAMETERS))
        project = params.section(PROJECT)
        values.update({key: project[key] for key in RUN_KEYS if key in project})
        self.metric, self.eval_writer = params.best_metric, run.writers.eval
        self.writer = tf.summary.create_file_writer(run.model_dir)
        with self.writer.as_default():
            hp.hparams({k: hparam_value(v) for k, v in values.items()}, trial_id=run.model_dir)
        self.writer.flush()

    def on_evaluation(self, evaluation: Evaluation) -> None:
        if evaluation.is_best:
            with self.eval_writer.as_default(step=evaluation.step):
                tf.summary.scalar(f"best/{self.metric}", evaluation.results[self.metric])

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
