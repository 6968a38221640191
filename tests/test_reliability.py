"""Reliability and insight: defaults that learn small data, no lost evaluation, provenance,
the input-wait measure, and the figures a person looks at."""

import json
import os
import time

import pytest
import tensorflow as tf
from conftest import project_params

from library import commands, schedule, summaries
from library.contract import Functions
from library.estimator import EvalSpec, TrainSpec, train_and_evaluate
from library.modes import ModeKeys
from project import inputs as project_inputs
from project import losses, model, optimizers

PROJECT = {
    "input_fn": project_inputs.input_fn,
    "model_fn": model.model_fn,
    "loss_fn": losses.loss_fn,
    "optimizer_fn": optimizers.optimizer_fn,
    "metrics_fn": model.metrics_fn,
    "predictions_fn": model.predictions_fn,
    "serving_fn": project_inputs.serving_fn,
}


def stripes_params(records, folder, **overrides):
    values = {
        "train_files": str(records / "train-*.tfrecord"),
        "eval_files": str(records / "eval-*.tfrecord"),
        "model_dir": str(folder / "model"),
        "best_model_dir": str(folder / "best"),
        "image_size": 24,
        "num_classes": 2,
        "train_batch_size": 8,
        "eval_batch_size": 16,
        "progress": "log",
        "log_steps": 1000,
    }
    return project_params(**{**values, **overrides})


def estimator_for(params, records=48):
    return commands.build_estimator(
        params, Functions.from_mapping(PROJECT), schedule.make_plan(params, records)
    )


def specs(params, max_steps, eval_files=None):
    return (
        TrainSpec(
            lambda ctx=None: project_inputs.input_fn(
                params.train_files, ModeKeys.TRAIN, params, ctx
            ),
            max_steps,
        ),
        EvalSpec(
            lambda ctx=None: project_inputs.input_fn(
                eval_files or params.eval_files, ModeKeys.EVAL, params, ctx
            )
        ),
    )


def test_a_short_run_on_small_data_classifies_what_it_learned(stripes_records, tmp_path):
    """With the defaults, a model whose training loss fell classifies its own training images
    in inference mode: Keras' batch-norm momentum of 0.99 without re-estimated statistics
    leaves them near chance after 40 steps. (The training order is not deterministic: at 30
    steps the mean training loss ranged 0.14-0.31 over runs, at 40 it was 0.08.)"""
    params = stripes_params(stripes_records, tmp_path, train_steps=40, steps_between_evals=40)
    train, _ = specs(params, 40)
    _, on_training_images = specs(params, 40, eval_files=params.train_files)
    train_and_evaluate(estimator_for(params), train, on_training_images)
    (last,) = summaries.read_metrics(params.model_dir)
    assert last["train_loss"] < 0.3, last  # it learned...
    assert last["eval_accuracy"] >= 0.9, last  # ...and evaluation says so


@pytest.fixture(scope="module")
def evaluated(stripes_records, tmp_path_factory):
    """A train_and_evaluate run of 4 steps evaluated every 2, through run.py's modes."""
    folder = tmp_path_factory.mktemp("evaluated")
    params = stripes_params(stripes_records, folder, train_steps=4, steps_between_evals=2)
    assert commands.run_mode("train_and_evaluate", params, PROJECT) == 0
    return params


def test_a_kill_between_a_checkpoint_and_its_evaluation_is_made_good(evaluated, capsys):
    params = evaluated
    # As if killed after saving ckpt-4 and before evaluating it: no row for step 4 yet.
    rows = summaries.read_metrics(params.model_dir)
    assert [r["step"] for r in rows] == [2, 4]
    with open(os.path.join(params.model_dir, summaries.METRICS_FILE), "w") as stream:
        stream.write(json.dumps(rows[0]) + "\n")
    capsys.readouterr()
    assert commands.run_mode("train_and_evaluate", params, PROJECT) == 0
    out = capsys.readouterr().out
    assert "step 4 was saved but never evaluated" in out and "already trained to step 4" in out
    again = summaries.read_metrics(params.model_dir)
    assert [r["step"] for r in again] == [2, 4]  # every evaluation step, exactly once
    assert again[1]["eval_loss"] == pytest.approx(rows[1]["eval_loss"], rel=1e-5)
    assert again[1]["train_loss"] == pytest.approx(rows[1]["train_loss"], rel=1e-5)
    assert again[1]["learning_rate"] == pytest.approx(rows[1]["learning_rate"])


def test_provenance_records_commit_versions_and_data_and_reports_changes(
    evaluated, stripes_records, capsys
):
    params = evaluated
    with open(os.path.join(params.model_dir, "provenance.json"), encoding="utf-8") as stream:
        first = json.load(stream)["starts"][0]
    assert first["versions"]["tensorflow"] == tf.__version__ and first["step"] == 0
    assert first["git"]["commit"] is None or len(first["git"]["commit"]) == 40
    manifest = str(stripes_records / "train.manifest.json")
    assert set(first["data"]) == {manifest, str(stripes_records / "eval.manifest.json")}
    assert len(first["data"][manifest]) == 64  # a sha256
    # The training data changes under the run: the resume says which file.
    saved = (stripes_records / "train.manifest.json").read_text()
    try:
        (stripes_records / "train.manifest.json").write_text(saved.replace('"created"', '"made"'))
        capsys.readouterr()
        assert commands.run_mode("train", params.replace(train_steps=5), PROJECT) == 0
    finally:
        (stripes_records / "train.manifest.json").write_text(saved)
    out = capsys.readouterr().out
    assert f"note: training data changed: {manifest} changed since the last start" in out


def input_wait_of(tmp_path, delay):
    """The input_wait the run logged, for an in-memory input slowed by ``delay`` s a batch."""
    params = project_params(
        model_dir=str(tmp_path / f"m{delay}"), image_size=16, num_classes=2, train_batch_size=8,
        log_steps=4, progress="log", batch_norm_refresh_batches=0,
    )  # fmt: skip
    images = tf.random.stateless_uniform([32, 16, 16, 3], [1, 2])
    labels = tf.cast(tf.reduce_mean(images, axis=[1, 2, 3]) > 0.5, tf.int32)

    def slow(element):
        if delay:
            tf.py_function(lambda: time.sleep(delay), [], [])
        return element

    def input_fn(ctx=None):
        dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).repeat()
        return dataset.batch(8).map(lambda features, labels: slow((features, labels))).prefetch(1)

    estimator = estimator_for(params, records=32)
    estimator.train(input_fn, 12)
    waits = [v for step, v in scalars(os.path.join(params.model_dir, "train"), "input_wait")]
    return waits[1:]  # the first period also fills the pipeline and traces the step


def scalars(folder, tag):
    import glob

    values = []
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values.append((event.step, float(tf.make_ndarray(value.tensor))))
    return sorted(values)


def test_input_wait_is_high_for_a_slow_input_and_low_for_an_in_memory_one(tmp_path, capsys):
    fast = input_wait_of(tmp_path, 0.0)
    slow = input_wait_of(tmp_path, 1.0)  # far above a step, even on a loaded machine
    assert fast and slow
    assert max(fast) < 0.3, fast
    assert min(slow) > 0.5, slow
    assert "warning: the run is input-bound" in capsys.readouterr().out


def test_best_figures_and_activation_histograms_are_written(evaluated):
    params = evaluated
    for name in ("confusion_matrix.png", "predictions.png"):
        with open(os.path.join(params.best_model_dir, name), "rb") as stream:
            assert stream.read(4) == b"\x89PNG", name
    tags = {tag for tag in _tags(os.path.join(params.model_dir, "eval"))}
    assert {"activations/block1", "activations/block2", "activations/block3"} <= tags
    assert "loss" in tags and "accuracy" in tags
    assert any(t.endswith("kernel") for t in tags)  # weight histograms


def test_histograms_are_written_in_tensorboards_format(tmp_path):
    import numpy as np

    values = np.concatenate([np.zeros(10), np.linspace(-1.0, 2.0, 50)])
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_histograms(writer, [("a/kernel", values), ("b/bias", np.full(4, 0.5))], 7)
    writer.flush()
    tables = {}
    for path in os.listdir(tmp_path):
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / path)):
            for value in event.summary.value:
                assert event.step == 7 and value.metadata.plugin_data.plugin_name == "histograms"
                tables[value.tag] = tf.make_ndarray(value.tensor)
    kernel, bias = tables["a/kernel"], tables["b/bias"]
    assert kernel.shape == (30, 3) and kernel[:, 2].sum() == 60
    assert kernel[0, 0] == -1.0 and kernel[-1, 1] == 2.0
    holding_zero = (kernel[:, 0] <= 0) & (kernel[:, 1] > 0)
    assert kernel[holding_zero, 2].item() >= 10  # the ten zeros
    assert bias[-1].tolist() == [0.5, 0.5, 4.0] and bias[:-1, 2].sum() == 0


def _tags(folder):
    import glob

    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                yield value.tag
