"""The engine: an end-to-end run, learning, resume, best checkpoint, divergence."""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, jpeg_bytes, plan_for, project_params, run_script, textured_image

from library import checkpoints, commands, distribute, schedule, steps, summaries
from library.config import load_sets
from library.contract import Functions
from library.estimator import DivergedError, Estimator, EvalSpec, TrainSpec, train_and_evaluate
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


def make_params(records_dir, tmp_path, **overrides):
    values = {
        "train_files": str(records_dir / "train-*.tfrecord"),
        "eval_files": str(records_dir / "eval-*.tfrecord"),
        "model_dir": str(tmp_path / "model"),
        "best_model_dir": str(tmp_path / "best"),
        "image_size": 16,
        "num_classes": 2,
        "train_batch_size": 8,
        "eval_batch_size": 8,
        "steps_between_evals": 2,
        "log_steps": 2,
        "progress": "log",
    }
    return project_params(**{**values, **overrides})


def make_estimator(params):
    return commands.build_estimator(
        params, Functions.from_mapping(PROJECT), schedule.make_plan(params, 48)
    )


def specs(params, max_steps):
    train = TrainSpec(
        lambda: project_inputs.input_fn(params.train_files, ModeKeys.TRAIN, params), max_steps
    )
    evaluation = EvalSpec(lambda: project_inputs.input_fn(params.eval_files, ModeKeys.EVAL, params))
    return train, evaluation


def read_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def run_py(*argv):
    return run_script("run.py", *argv)


def test_end_to_end_smoke_run_leaves_outputs_that_agree(stripes_records, tmp_path):
    model_dir, best_dir = tmp_path / "model", tmp_path / "best"
    result = run_py(
        "--config_set", "smoke",
        "--train_files", str(stripes_records / "train-*.tfrecord"),
        "--eval_files", str(stripes_records / "eval-*.tfrecord"),
        "--model_dir", str(model_dir), "--best_model_dir", str(best_dir),
        "--progress", "log",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"output folder {model_dir}" in result.stdout
    # Checkpoints at each evaluation (smoke: 4 steps, eval every 2).
    assert [n for n, _ in checkpoints.numbered_checkpoints(str(model_dir))] == [4, 2]
    # metrics.jsonl and best.json agree on the best evaluation.
    records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all({"epoch", "train_loss", "eval_loss", "eval_accuracy"} <= set(r) for r in records)
    best = json.loads((best_dir / "best.json").read_text())
    best_record = min(records, key=lambda r: r["eval_loss"])
    assert best["metric"] == "loss" and best["step"] == best_record["step"]
    assert best["value"] == pytest.approx(best_record["eval_loss"])
    assert os.path.exists(best_dir / f"{best['checkpoint']}.index")
    # The resolved configuration, the model summary, plots and TensorBoard events.
    saved = load_sets(str(model_dir / "project.yaml"))["smoke"]
    assert saved["train_steps"] == 4 and saved["model_dir"] == str(model_dir)
    assert load_sets(str(model_dir / "hyperparameters.yaml"))["smoke"]["num_classes"] == 2
    assert "Total params" in (model_dir / "model_summary.txt").read_text()
    for plot in ("loss.png", "eval_accuracy.png", "learning_rate.png"):
        assert (model_dir / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    train_tags, eval_tags = event_tags(model_dir / "train"), event_tags(model_dir / "eval")
    assert {"loss", "learning_rate", "steps_per_sec", "input_wait", "input"} <= set(train_tags), (
        train_tags
    )
    assert eval_tags["loss"] == eval_tags["accuracy"] == [2, 4]
    # The best SavedModel loads back and predicts from encoded image bytes what the best
    # checkpoint's weights predict.
    loaded = tf.saved_model.load(str(best_dir / "saved_model"))
    serve = loaded.signatures["serving_default"]
    images = [jpeg_bytes(textured_image(40, 40, seed=s)) for s in (1, 2)]
    out = serve(image_bytes=tf.constant(images))
    params = make_params(stripes_records, tmp_path, image_size=32)
    net, prefix = make_estimator(params).restore_model("best")
    assert prefix == str(best_dir / best["checkpoint"])
    features = project_inputs.decode_batch(tf.constant(images), False, params)
    by_hand = tf.nn.softmax(net({"image": features}, training=False)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), by_hand, rtol=1e-4, atol=1e-6)
    assert set(out["class_name"].numpy()) <= {b"horizontal", b"vertical"}


def event_tags(folder):
    """{tag: [steps]} of the TensorBoard events in ``folder``."""
    tags = {}
    for path in sorted(glob.glob(str(folder / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return {tag: sorted(steps) for tag, steps in tags.items()}


def test_loss_halves_on_a_learnable_problem(tmp_path):
    params = project_params(
        model_dir=str(tmp_path / "m"),
        best_model_dir=str(tmp_path / "b"),
        image_size=16,
        num_classes=2,
        train_batch_size=16,
        eval_batch_size=16,
        learning_rate=3e-3,
        dropout_rate=0.0,
        progress="log",
        log_steps=1000,
    )
    estimator = make_estimator(params)

    def train_input():
        return project_inputs.generator_input_fn("", ModeKeys.TRAIN, params)

    def eval_input():
        return project_inputs.generator_input_fn("", ModeKeys.EVAL, params)

    estimator.train(train_input, 1)
    before = estimator.evaluate(eval_input)["loss"]
    estimator.train(train_input, 80)
    after = estimator.evaluate(eval_input)
    assert after["loss"] <= before / 2, (before, after)
    assert after["accuracy"] >= 0.75  # chance is 0.5; batch-norm statistics lag after 80 steps


def test_stop_and_resume_reaches_the_exact_step(stripes_records, tmp_path, capsys):
    params = make_params(stripes_records, tmp_path, steps_per_execution=3)
    train, evaluation = specs(params, 5)
    assert train_and_evaluate(make_estimator(params), train, evaluation) == 5
    train, evaluation = specs(params, 9)
    assert train_and_evaluate(make_estimator(params), train, evaluation) == 9
    printed = capsys.readouterr().out
    assert "resuming from" in printed and "at step 5" in printed
    numbers = [n for n, _ in checkpoints.numbered_checkpoints(params.model_dir)]
    assert numbers[0] == 9
    steps_logged = [r["step"] for r in summaries.read_metrics(params.model_dir)]
    assert steps_logged == [2, 4, 5, 6, 8, 9]  # chunks of 3 never run past an evaluation


def _train_to(params, max_steps):
    return make_estimator(params).train(
        lambda: project_inputs.input_fn(params.train_files, ModeKeys.TRAIN, params), max_steps
    )


@pytest.fixture
def trained_twice(stripes_records, tmp_path):
    """A model_dir with checkpoints at steps 2 and 4."""
    params = make_params(stripes_records, tmp_path, save_checkpoints_steps=2)
    _train_to(params, 4)
    assert [n for n, _ in checkpoints.numbered_checkpoints(params.model_dir)] == [4, 2]
    return params


def test_garbage_state_file_does_not_restart_from_scratch(trained_twice, capsys):
    params = trained_twice.replace(keep_checkpoints=2)
    with open(os.path.join(params.model_dir, "checkpoint"), "w") as stream:
        stream.write("this is not a checkpoint state\x00\x01")
    assert tf.train.latest_checkpoint(params.model_dir) is None  # the trap
    assert _train_to(params, 8) == 8
    assert "ckpt-4 at step 4" in capsys.readouterr().out  # the newest, not an older one
    assert tf.train.latest_checkpoint(params.model_dir).endswith("ckpt-8")
    # The rewritten state still lets keep_checkpoints delete the checkpoints it lists.
    assert [n for n, _ in checkpoints.numbered_checkpoints(params.model_dir)] == [8, 6]


def test_truncated_newest_checkpoint_falls_back_to_the_previous(trained_twice, capsys):
    params = trained_twice
    data = glob.glob(os.path.join(params.model_dir, "ckpt-4.data-*"))[0]
    with open(data, "r+b") as stream:
        stream.truncate(os.path.getsize(data) // 3)
    assert _train_to(params, 6) == 6
    printed = capsys.readouterr().out
    assert "skipping checkpoint" in printed and "ckpt-4" in printed
    assert "resuming from" in printed and "ckpt-2 at step 2" in printed


def test_leftover_temp_folders_are_removed(trained_twice, capsys):
    params = trained_twice
    leftover = os.path.join(params.model_dir, "ckpt-5_temp")
    os.makedirs(os.path.join(leftover, "part-0"))
    _train_to(params, 5)
    assert not os.path.exists(leftover)
    assert "ckpt-5_temp" in capsys.readouterr().out


def test_no_restorable_checkpoint_is_an_error_not_a_fresh_start(trained_twice):
    params = trained_twice
    for path in glob.glob(os.path.join(params.model_dir, "ckpt-*.data-*")):
        with open(path, "r+b") as stream:
            stream.truncate(10)
    with pytest.raises(checkpoints.CheckpointError, match="none of 2 checkpoints restores"):
        _train_to(params, 6)


def test_restarted_run_keeps_a_better_earlier_best(stripes_records, tmp_path):
    params = make_params(stripes_records, tmp_path)
    train, evaluation = specs(params, 2)
    train_and_evaluate(make_estimator(params), train, evaluation)
    best_path = os.path.join(params.best_model_dir, "best.json")
    first = read_json(best_path)
    # An earlier run (before a restart) had reached a far better value.
    better = dict(first, value=1e-6, step=1)
    with open(best_path, "w") as stream:
        json.dump(better, stream)
    train, evaluation = specs(params, 6)
    train_and_evaluate(make_estimator(params), train, evaluation)
    # The better best is kept. (Its SavedModel is written again from its checkpoint: this
    # best.json says the SavedModel is of another step than the best.)
    kept = read_json(best_path)
    assert kept.pop("saved_model_step") == better["step"] == 1
    assert kept == {k: v for k, v in better.items() if k != "saved_model_step"}
    evaluated = [r["eval_loss"] for r in summaries.read_metrics(params.model_dir)]
    assert len(evaluated) == 3 and min(evaluated) > 1e-6


def test_nonfinite_batch_leaves_weights_and_optimizer_untouched(tmp_path):
    params = project_params(image_size=8, num_classes=2, dropout_rate=0.0)
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, plan_for(10))
    optimizer.build(net.trainable_variables)
    state = steps.StepState()
    train_step = tf.function(steps.build_train_step(net, losses.loss_fn, optimizer, params, state))
    images = tf.random.uniform([4, 8, 8, 3])
    labels = tf.constant([0, 1, 0, 1])
    train_step({"image": images}, labels)  # a good step: the optimizer has state now
    before = [v.numpy().copy() for v in net.variables + optimizer.variables]
    poisoned = tf.tensor_scatter_nd_update(images, [[0, 0, 0, 0]], [np.nan])
    train_step({"image": poisoned}, labels)
    after = [v.numpy() for v in net.variables + optimizer.variables]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)
    assert int(state.step) == 2 and int(state.nonfinite_in_a_row) == 1
    assert int(optimizer.iterations) == 1
    train_step({"image": images}, labels)
    assert int(state.nonfinite_in_a_row) == 0 and int(optimizer.iterations) == 2


def test_nonfinite_steps_in_a_row_stop_with_exit_status_1(stripes_records, tmp_path, capsys):
    params = make_params(stripes_records, tmp_path, max_nonfinite_steps=3, save_checkpoints_steps=1)

    def poisoned_after_two_batches(pattern, mode, params, input_context=None):
        dataset = project_inputs.input_fn(pattern, mode, params, input_context).enumerate()
        return dataset.map(
            lambda i, element: (
                {"image": element[0]["image"] * tf.where(i >= 2, np.nan, 1.0)},
                element[1],
            )
        )

    project = dict(PROJECT, input_fn=poisoned_after_two_batches)
    assert commands.run_mode("train", params, project) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    # Batches 0 and 1 train steps 1 and 2 (the input picture spends no batch); 2-4 are NaN.
    assert "NaN/Inf for 3 steps in a row at step 5" in lines[0]
    assert "last good checkpoint" in lines[0] and "ckpt-" in lines[0]
    assert "learning_rate" in lines[0]
    with pytest.raises(DivergedError):
        _ = make_estimator(params).train(
            lambda: poisoned_after_two_batches(params.train_files, "train", params), 9
        )


def test_truncated_shard_stops_training_with_one_line_naming_it(stripes_records, tmp_path):
    for name in os.listdir(stripes_records):
        data = (stripes_records / name).read_bytes()
        if name == "train-00001-of-00002.tfrecord":
            data = data[: len(data) // 2]
        (tmp_path / name).write_bytes(data)
    result = run_py(
        "--config_set", "smoke",
        "--train_files", str(tmp_path / "train-*.tfrecord"),
        "--eval_files", str(tmp_path / "eval-*.tfrecord"),
        "--model_dir", str(tmp_path / "model"), "--best_model_dir", str(tmp_path / "best"),
        "--train_steps", "40",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert str(tmp_path / "train-00001-of-00002.tfrecord") in lines[0]
    assert "skip_corrupt_records" in lines[0]


def test_evaluate_predict_and_export_modes(stripes_records, tmp_path, capsys):
    params = make_params(stripes_records, tmp_path)
    train, evaluation = specs(params, 2)
    train_and_evaluate(make_estimator(params), train, evaluation)
    capsys.readouterr()
    assert commands.run_mode("evaluate", params.replace(checkpoint="best"), PROJECT) == 0
    # The best checkpoint (in best_model_dir), evaluated on the same data as during training.
    (row,) = summaries.read_metrics(params.model_dir)
    printed = capsys.readouterr().out
    assert f"evaluated {params.best_model_dir}/ckpt-2 on {params.eval_files}" in printed
    assert f"loss {row['eval_loss']:.4f}, accuracy {row['eval_accuracy']:.4f}" in printed
    images = tmp_path / "predict"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(jpeg_bytes(textured_image(30, 30, seed=i)))
    assert (
        commands.run_mode("predict", params.replace(predict_files=str(images / "*.jpg")), PROJECT)
        == 0
    )
    out = capsys.readouterr().out
    assert f"predicting 3 images with {params.model_dir}/ckpt-2" in out
    with open(os.path.join(params.model_dir, "predictions.csv"), encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    printed = {
        os.path.basename(r["file"]): (r["class_name"], float(r["probability"])) for r in rows
    }
    assert sorted(printed) == ["0.jpg", "1.jpg", "2.jpg"]
    for name, (class_name, probability) in printed.items():
        assert f"{name}: {class_name} ({probability:.3f})" in out
    # What the latest weights say about the same images, computed here by hand.
    net, _ = make_estimator(params).restore_model("latest")
    encoded = tf.constant([(images / name).read_bytes() for name in sorted(printed)])
    logits = net({"image": project_inputs.decode_batch(encoded, False, params)}, training=False)
    probabilities = tf.nn.softmax(logits).numpy()
    names = ["horizontal", "vertical"]
    for name, row in zip(sorted(printed), probabilities, strict=True):
        assert printed[name] == (names[row.argmax()], pytest.approx(row.max(), abs=5e-4))
    assert (
        commands.run_mode("export", params.replace(export_dir=str(tmp_path / "export")), PROJECT)
        == 0
    )
    exported = glob.glob(str(tmp_path / "export" / "*"))
    assert len(exported) == 1 and os.path.exists(os.path.join(exported[0], "saved_model.pb"))
    serve = tf.saved_model.load(exported[0]).signatures["serving_default"]
    served = serve(image_bytes=encoded)
    np.testing.assert_allclose(served["probabilities"].numpy(), probabilities, rtol=1e-4, atol=1e-6)
    assert [n.decode() for n in served["class_name"].numpy()] == [
        printed[n][0] for n in sorted(printed)
    ]
    with pytest.raises(commands.UsageError, match="no checkpoint to load"):
        commands.run_mode("evaluate", params.replace(model_dir=str(tmp_path / "empty")), PROJECT)


def test_xla_compiled_loop_trains_and_still_skips_nonfinite_steps():
    params = project_params(image_size=8, num_classes=2, dropout_rate=0.0)
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, plan_for(10))
    optimizer.build(net.trainable_variables)
    state = steps.StepState()
    train_step = steps.build_train_step(net, losses.loss_fn, optimizer, params, state)
    strategy = tf.distribute.get_strategy()
    train_loop = steps.build_train_loop(strategy, train_step, state, xla=True)
    probe = iter(
        tf.data.Dataset.from_tensors(({"image": tf.zeros([4, 8, 8, 3])}, tf.zeros([4], tf.int32)))
    )
    graph = train_loop.get_concrete_function(probe, tf.constant(1, tf.int64)).graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    assert any(n.attr["_XlaMustCompile"].b for n in nodes)  # the step really is compiled
    images = tf.random.uniform([3, 4, 8, 8, 3])
    images = tf.tensor_scatter_nd_update(images, [[1, 0, 0, 0, 0]], [np.nan])  # batch 1 is poisoned
    dataset = tf.data.Dataset.from_tensor_slices(
        (
            {"image": images, "filename": tf.constant([["a"] * 4] * 3)},
            tf.constant([[0, 1, 0, 1]] * 3),
        )
    )
    # The file names (strings: XLA takes none) are dropped on the way to the devices.
    iterator = iter(distribute.distribute_dataset(strategy, lambda: dataset))
    assert int(train_loop(iterator, tf.constant(1, tf.int64))) == 0
    before = [v.numpy().copy() for v in net.variables]
    assert int(train_loop(iterator, tf.constant(1, tf.int64))) == 1
    for old, new in zip(before, net.variables, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert int(train_loop(iterator, tf.constant(1, tf.int64))) == 0
    assert int(state.step) == 3 and int(optimizer.iterations) == 2


def test_a_nonfinite_evaluation_never_becomes_the_best(tmp_path):
    exporter = checkpoints.BestExporter(str(tmp_path / "best"), "loss", "min")
    weights = tf.Module()
    weights.v = tf.Variable(1.0)
    assert not exporter.maybe_export({"loss": float("nan")}, 1, 0.1, weights)
    assert not exporter.maybe_export({"loss": float("inf")}, 2, 0.2, weights)
    assert not os.path.exists(tmp_path / "best" / "best.json")
    assert exporter.maybe_export({"loss": 0.5}, 3, 0.3, weights)
    assert not exporter.maybe_export({"loss": float("nan")}, 4, 0.4, weights)
    assert read_json(tmp_path / "best" / "best.json")["step"] == 3
    with pytest.raises(
        checkpoints.CheckpointError, match="best_metric 'loss' is not an evaluation"
    ):
        exporter.maybe_export({"accuracy": 0.9}, 5, 0.5, weights)


def test_the_best_saved_model_follows_the_best_through_new_bests_and_restarts(tmp_path):
    best_dir = tmp_path / "best"
    exporter = checkpoints.BestExporter(str(best_dir), "loss", "min")
    weights = tf.Module()
    weights.v = tf.Variable(1.0)
    exporter.maybe_export({"loss": 0.5}, 3, 0.3, weights)

    def export_fn(prefix, directory):
        restored = tf.Module()
        restored.v = tf.Variable(0.0)
        tf.train.Checkpoint(model=restored).restore(prefix).assert_existing_objects_matched()
        tf.saved_model.save(restored, directory)

    def export_while_a_new_best_lands(prefix, directory):
        # The export runs in the background: training keeps a new best meanwhile, and the
        # best folder drops the checkpoint being exported.
        weights.v.assign(2.0)
        assert exporter.maybe_export({"loss": 0.4}, 4, 0.4, weights)
        export_fn(prefix, directory)

    assert exporter.export_saved_model(export_while_a_new_best_lands)
    assert float(tf.saved_model.load(str(best_dir / "saved_model")).v) == 1.0
    best = read_json(best_dir / "best.json")
    assert (best["step"], best["saved_model_step"]) == (4, 3)
    # The run is killed here. At the next start the SavedModel is older than the best.
    exporter = checkpoints.BestExporter(str(best_dir), "loss", "min")
    assert exporter.export_saved_model(export_fn)
    assert float(tf.saved_model.load(str(best_dir / "saved_model")).v) == 2.0
    assert read_json(best_dir / "best.json")["saved_model_step"] == 4
    assert exporter.export_saved_model(export_fn) is None  # up to date: nothing to write
    assert not [name for name in os.listdir(best_dir) if ".tmp-" in name]


def test_a_killed_run_resumes_from_its_last_checkpoint(stripes_records, tmp_path):
    model_dir = str(tmp_path / "model")
    argv = [
        "--config_set", "smoke",
        "--train_files", str(stripes_records / "train-*.tfrecord"),
        "--eval_files", str(stripes_records / "eval-*.tfrecord"),
        "--model_dir", model_dir, "--best_model_dir", str(tmp_path / "best"),
        "--train_steps", "60", "--steps_between_evals", "1000", "--save_checkpoints_steps", "5",
    ]  # fmt: skip
    command = [sys.executable, os.path.join(ROOT, "run.py"), *argv]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not checkpoints.numbered_checkpoints(model_dir):
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)  # no clean-up of any kind, as with a power cut
    process.wait()
    killed_at = checkpoints.numbered_checkpoints(model_dir)[0][0]
    assert 5 <= killed_at < 60
    result = run_py(*argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"at step {killed_at} " in result.stdout and "resuming from" in result.stdout
    assert checkpoints.numbered_checkpoints(model_dir)[0][0] == 60
    assert [r["step"] for r in summaries.read_metrics(model_dir)] == [60]


def _in_memory_input(params):
    """A deterministic pipeline (seeded shuffle, no parallel reads): the data order is fixed."""
    images = tf.random.stateless_uniform([48, 16, 16, 3], [7, 7])
    labels = tf.cast(tf.reduce_mean(images, axis=[1, 2, 3]) > 0.5, tf.int32)

    def input_fn():
        dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
        return dataset.shuffle(48, seed=3).repeat().batch(8, drop_remainder=True)

    return input_fn


def _weights_after(params, stops):
    for max_steps in stops:  # a new Estimator each time, as after a restart
        make_estimator(params).train(_in_memory_input(params), max_steps)
    restored, _ = make_estimator(params).restore_model("latest")
    return [v.numpy() for v in restored.variables]


@pytest.mark.parametrize("checkpoint_input", [True, False])
def test_resume_mid_epoch_continues_the_same_data_order(tmp_path, checkpoint_input):
    def params_in(folder):
        return project_params(
            model_dir=str(tmp_path / folder),
            best_model_dir=str(tmp_path / f"{folder}-best"),
            image_size=16,
            num_classes=2,
            dropout_rate=0.0,
            save_checkpoints_steps=1,
            progress="log",
            checkpoint_input_pipeline=checkpoint_input,
        )

    straight = _weights_after(params_in("straight"), [5])
    interrupted = _weights_after(params_in("interrupted"), [2, 5])  # stopped mid-epoch at 2
    same = all(
        np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(straight, interrupted, strict=True)
    )
    # With the input position saved, the restarted run sees exactly the batches the straight
    # run saw; without it, the pipeline starts over and the weights differ.
    assert same is checkpoint_input


def test_an_input_pipeline_that_cannot_be_saved_is_one_clear_error(tmp_path):
    params = project_params(
        model_dir=str(tmp_path / "m"),
        best_model_dir=str(tmp_path / "b"),
        image_size=8,
        num_classes=2,
        train_batch_size=4,
        checkpoint_input_pipeline=True,
        progress="log",
    )

    def generator_input():
        return project_inputs.generator_input_fn("", ModeKeys.TRAIN, params)

    with pytest.raises(checkpoints.CheckpointError, match="checkpoint_input_pipeline: this input"):
        make_estimator(params).train(generator_input, 2)


def test_resume_with_another_train_steps_keeps_the_learning_rate_continuous(
    stripes_records, tmp_path, capsys
):
    def learning_rates(folder, stops):
        params = make_params(
            stripes_records, tmp_path / folder, lr_schedule="cosine", steps_between_evals=1,
            learning_rate=0.01,
        )  # fmt: skip
        for train_steps, stop_at in stops:  # a new plan, as a restart with --train_steps makes
            plan = schedule.make_plan(params.replace(train_steps=train_steps), 48)
            estimator = commands.build_estimator(params, Functions.from_mapping(PROJECT), plan)
            train, evaluation = specs(params, stop_at)
            train_and_evaluate(estimator, train, evaluation)
        return [r["learning_rate"] for r in summaries.read_metrics(params.model_dir)]

    straight = learning_rates("straight", [(8, 8)])
    capsys.readouterr()
    resumed = learning_rates("resumed", [(8, 4), (20, 8)])  # stopped at 4, then 20 steps asked
    assert "keeps the length it started with (8 steps)" in capsys.readouterr().out
    assert len(straight) == len(resumed) == 8
    np.testing.assert_allclose(resumed, straight, rtol=1e-6)
    assert straight[0] > straight[-1] > 0  # a decaying schedule: the check means something


def test_training_needs_a_plan_and_never_guesses_one(tmp_path):
    params = project_params(model_dir=str(tmp_path / "m"), image_size=8, num_classes=2)
    estimator = Estimator(model.model_fn, losses.loss_fn, optimizers.optimizer_fn, params)
    with pytest.raises(ValueError, match="training needs a plan"):
        estimator.train(lambda: project_inputs.generator_input_fn("", ModeKeys.TRAIN, params), 2)
    assert not os.path.exists(tmp_path / "m")  # refused before anything was written
