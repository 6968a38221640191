"""The train and eval steps and what watches them: the NaN guard, XLA, update scales, the
evaluation pass, learning on small data, the input-wait measure, progress and figures."""

import contextlib
import io
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from projects import classifier
from projects.classifier import functions
from support import argv, estimator, one_line, params, run_cli, scalars, specs, variant

from library.base.errors import DivergedError
from library.contract import model_feature_names
from library.engine import distribute, schedule, steps
from library.engine.estimator import train_and_evaluate
from library.engine.evaluator import Evaluator
from library.monitor import progress
from library.recorders import metrics_log, plots, summaries
from library.vision import figures


def plan_for(train_steps, steps_per_epoch=10):
    """A plan of ``train_steps`` steps for tests that build an optimizer by hand."""
    return schedule.Plan(steps_per_epoch, train_steps, train_steps, train_steps, train_steps)


def built(image_size=8, **overrides):
    """The test project's model, a built Adam and a step state."""
    run_params = params(None, None, image_size=image_size, num_classes=2, **overrides)
    net = functions.model_fn(run_params)
    optimizer = functions.optimizer_fn(run_params, plan_for(10))
    optimizer.build(net.trainable_variables)
    return run_params, net, optimizer, steps.StepState()


def test_nonfinite_batch_leaves_weights_and_optimizer_untouched():
    run_params, net, optimizer, state = built()
    step = tf.function(steps.one_model_step(net, functions.loss_fn, optimizer, run_params, state))
    images = tf.random.uniform([4, 8, 8, 3])
    labels = tf.constant([0, 1, 0, 1])
    step(({"image": images}, labels))  # a good step: the optimizer has state now
    before = [v.numpy().copy() for v in net.variables + optimizer.variables]
    poisoned = tf.tensor_scatter_nd_update(images, [[0, 0, 0, 0]], [np.nan])
    step(({"image": poisoned}, labels))
    after = [v.numpy() for v in net.variables + optimizer.variables]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)  # batch-norm statistics included
    assert int(state.step) == 2 and int(state.nonfinite_in_a_row) == 1
    assert int(optimizer.iterations) == 1
    step(({"image": images}, labels))
    assert int(state.nonfinite_in_a_row) == 0 and int(optimizer.iterations) == 2


def test_nonfinite_steps_in_a_row_stop_with_exit_status_1(stripes_records, tmp_path):
    def poisoned_after_two_batches(pattern, mode, run_params, input_context=None):
        dataset = functions.input_fn(pattern, mode, run_params, input_context).enumerate()
        return dataset.map(
            lambda i, element: (
                {"image": element[0]["image"] * tf.where(i >= 2, np.nan, 1.0)},
                element[1],
            )
        )

    command = argv(stripes_records, tmp_path, "--mode", "train", "--max_nonfinite_steps", "3",
                   "--save_checkpoints_steps", "1", "--train_steps", "9")  # fmt: skip
    result = run_cli(*command, project=variant(classifier, input_fn=poisoned_after_two_batches))
    assert result.returncode == 1
    line = one_line(result.stderr)
    # Batches 0 and 1 train steps 1 and 2 (the input picture spends no batch); 2-4 are NaN.
    assert "NaN/Inf for 3 steps in a row at step 5" in line
    assert "last good checkpoint" in line and "ckpt-" in line
    assert "lower the learning rate" in line
    run_params = params(stripes_records, tmp_path, max_nonfinite_steps=3)
    with pytest.raises(DivergedError):
        estimator(run_params).train(
            lambda: poisoned_after_two_batches(run_params.train_files, "train", run_params), 9
        )


def test_truncated_shard_stops_training_with_one_line_naming_it(stripes_records, tmp_path):
    for name in os.listdir(stripes_records):
        data = (stripes_records / name).read_bytes()
        if name == "train-00001-of-00002.tfrecord":
            data = data[: len(data) // 2]
        (tmp_path / name).write_bytes(data)
    result = run_cli(*argv(tmp_path, tmp_path, "--train_steps", "40"))
    assert result.returncode == 2, result.stderr[-2000:]
    line = one_line(result.stderr)
    assert str(tmp_path / "train-00001-of-00002.tfrecord") in line
    assert "skip_corrupt_records" in line


def test_xla_compiled_loop_trains_and_still_skips_nonfinite_steps():
    run_params, net, optimizer, state = built()
    train_step = steps.one_model_step(net, functions.loss_fn, optimizer, run_params, state)
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
    # The file names (strings: XLA takes none) are dropped on the way to the devices: the
    # model does not take them.
    features = model_feature_names(net)
    iterator = iter(distribute.distribute_dataset(strategy, lambda: dataset, features=features))
    assert int(train_loop(iterator, tf.constant(1, tf.int64))) == 0
    before = [v.numpy().copy() for v in net.variables]
    assert int(train_loop(iterator, tf.constant(1, tf.int64))) == 1
    for old, new in zip(before, net.variables, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert int(train_loop(iterator, tf.constant(1, tf.int64))) == 0
    assert int(state.step) == 3 and int(optimizer.iterations) == 2


def test_update_scales_and_the_multiplier_scale_each_update_not_the_gradient():
    run_params = params(None, None, image_size=8, num_classes=2)
    features = {"image": tf.random.uniform([4, 8, 8, 3], seed=2)}
    labels = tf.constant([0, 1, 0, 1])
    reference = functions.model_fn(run_params)

    def moved(scales, multiplier, optimizer):
        net = functions.model_fn(run_params)
        net.set_weights(reference.get_weights())
        optimizer.build(net.trainable_variables)
        state = steps.StepState()
        state.lr_multiplier.assign(multiplier)
        step = tf.function(
            steps.one_model_step(
                net, functions.loss_fn, optimizer, run_params, state,
                update_scales=scales, scale_updates=True,
            )
        )  # fmt: skip
        before = [v.numpy().copy() for v in net.trainable_variables]
        step((features, labels))
        return [v.numpy() - b for v, b in zip(net.trainable_variables, before, strict=True)]

    count = len(reference.trainable_variables)
    plain = moved([1.0] * count, 1.0, keras.optimizers.SGD(0.1))
    tenth = moved([0.1] * count, 1.0, keras.optimizers.SGD(0.1))
    halved = moved([1.0] * count, 0.5, keras.optimizers.SGD(0.1))
    for full, small, half in zip(plain, tenth, halved, strict=True):
        np.testing.assert_allclose(small, 0.1 * full, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(half, 0.5 * full, rtol=1e-4, atol=1e-7)
    # Under Adam a gradient scale would change nothing; the update scale does.
    adam_full = moved([1.0] * count, 1.0, keras.optimizers.Adam(0.01))
    adam_tenth = moved([0.1] * count, 1.0, keras.optimizers.Adam(0.01))
    np.testing.assert_allclose(adam_tenth[0], 0.1 * adam_full[0], rtol=1e-4, atol=1e-8)


def test_the_evaluation_pass_gives_the_first_batch_outputs_and_block_activations():
    """What the recorders draw and histogram comes from the evaluation pass itself, and that
    pass still counts its first batch in the loss and metrics."""
    from support import functions as contract_functions

    run_params = params(None, None, image_size=16, num_classes=3)
    net = functions.model_fn(run_params)
    images = tf.random.stateless_uniform([8, 16, 16, 3], [3, 4])
    labels = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])

    def input_fn():
        return tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(4)

    evaluator = Evaluator(contract_functions(), run_params, tf.distribute.get_strategy())
    results = evaluator.evaluate(net, input_fn)
    outputs = net({"image": images}, training=False)
    expected_loss = float(tf.reduce_mean(functions.loss_fn(labels, outputs, run_params)))
    assert results["loss"] == pytest.approx(expected_loss, rel=1e-5)
    accuracy = float(np.mean(np.argmax(outputs, -1) == labels.numpy()))
    assert results["accuracy"] == pytest.approx(accuracy)
    np.testing.assert_allclose(evaluator.first_outputs, outputs[:4], rtol=1e-5, atol=1e-6)
    assert set(evaluator.activations) == {"block1"}
    block1 = keras.Model(net.input, net.get_layer("block1").output)({"image": images[:4]})
    np.testing.assert_allclose(evaluator.activations["block1"], block1, rtol=1e-5, atol=1e-6)


def endless_stripes(size, seed):
    """(image, label) pairs made in Python: label 0 horizontal stripes, 1 vertical."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    while True:
        label = int(rng.integers(2))
        period = rng.uniform(3.0, 8.0)
        wave = np.sin(2 * np.pi * (x if label else y) / period + rng.uniform(0, 2 * np.pi))
        colour = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        yield (0.5 + 0.5 * wave)[..., None] * colour, label


def stripes_input(size, seed, batches=None):
    def input_fn():
        signature = (tf.TensorSpec([size, size, 3]), tf.TensorSpec([], tf.int32))
        dataset = tf.data.Dataset.from_generator(
            lambda: endless_stripes(size, seed), output_signature=signature
        )
        dataset = dataset.batch(16)
        if batches:
            dataset = dataset.take(batches)
        return dataset.map(lambda image, label: ({"image": image}, label))

    return input_fn


def test_loss_halves_on_a_learnable_problem(tmp_path):
    run_params = params(
        None, tmp_path, num_classes=2, train_batch_size=16, eval_batch_size=16,
        batch_norm_refresh_batches=2,
    )  # fmt: skip
    learner = estimator(run_params)
    evaluation = stripes_input(16, seed=1, batches=4)  # a fixed stream: the same each time
    learner.train(stripes_input(16, seed=0), 1)
    before = learner.evaluate(evaluation)["loss"]
    learner.train(stripes_input(16, seed=0), 80)
    after = learner.evaluate(evaluation)
    assert after["loss"] <= before / 2, (before, after)
    assert after["accuracy"] >= 0.75  # chance is 0.5


def test_a_short_run_on_small_data_classifies_what_it_learned(stripes_records, tmp_path):
    """With the default run options, a model whose training loss fell classifies its own
    training images in inference mode: batch-norm statistics that lag behind the weights
    (the test project keeps Keras' momentum of 0.99) would leave them near chance after 40
    steps without their re-estimation. ``train_loss`` is the mean of steps 21-40."""
    from library.config import RUN_OPTIONS

    defaults = {f.name: f.default for f in RUN_OPTIONS if f.name == "batch_norm_refresh_batches"}
    run_params = params(
        stripes_records, tmp_path, train_steps=40, steps_between_evals=40, log_steps=1000,
        save_checkpoints_steps=20, eval_batch_size=16, image_size=24, learning_rate=0.01, **defaults,
    )  # fmt: skip
    assert run_params.batch_norm_refresh_batches > 0
    train, on_training_images = specs(run_params, 40, eval_files=run_params.train_files)
    train_and_evaluate(estimator(run_params), train, on_training_images)
    (last,) = metrics_log.read_metrics(run_params.model_dir)
    assert last["train_loss"] < 0.3, last  # it learned...
    assert last["eval_accuracy"] >= 0.9, last  # ...and evaluation says so
    # In inference mode, on central crops of the same images, the loss is no worse than
    # training's (with lagging statistics it was twice training's here).
    assert last["eval_loss"] < last["train_loss"], last


def input_wait_of(tmp_path, delay):
    """The input_wait the run logged and its input check's figures, for an in-memory input
    slowed by ``delay`` s a batch (in a map of its own)."""
    run_params = params(None, tmp_path / f"m{delay}", num_classes=2, log_steps=4, input_check=True)
    images = tf.random.stateless_uniform([32, 16, 16, 3], [1, 2])
    labels = tf.cast(tf.reduce_mean(images, axis=[1, 2, 3]) > 0.5, tf.int32)

    def slow_decode(features, labels):
        if delay:
            tf.py_function(lambda: time.sleep(delay), [], [])
        return features, labels

    def input_fn(ctx=None):
        dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).repeat()
        return dataset.batch(8).map(slow_decode).prefetch(1)

    estimator(run_params, records=32).train(input_fn, 24)  # checked at step 8: 16 to go
    train = os.path.join(run_params.model_dir, "train")
    waits = [v for _, v in scalars(train, "input_wait")]
    (pipeline,) = [v for _, v in scalars(train, "input_check/pipeline_batches_per_sec")]
    (step,) = [v for _, v in scalars(train, "input_check/step_per_sec")]
    return waits[1:], pipeline, step  # the first period also fills the pipeline and traces


def test_an_input_bound_run_is_told_its_costliest_stage_and_a_compute_bound_one_nothing(
    tmp_path, capsys
):
    """The pipeline alone against the step alone: an input slowed by design (0.1 s a batch,
    far above a step of this model even on a loaded machine) is input-bound, its slow map
    named; the same model on an in-memory input is not, and the log says nothing."""
    fast, fast_pipeline, fast_step = input_wait_of(tmp_path, 0.0)
    assert "input-bound" not in capsys.readouterr().out
    assert fast_pipeline > fast_step
    slow, slow_pipeline, slow_step = input_wait_of(tmp_path, 0.1)
    out = capsys.readouterr().out
    assert slow_pipeline < 11 and slow_pipeline < slow_step, (slow_pipeline, slow_step)
    assert "warning: the run is input-bound: the input pipeline alone delivers" in out
    assert "its costliest stage: map slow_decode" in out
    assert len(fast) == len(slow) == 5
    assert max(fast) < 0.3, fast
    assert min(slow) > 0.5, slow


def test_histograms_are_written_in_tensorboards_format(tmp_path):
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


def test_throughput_leaves_evaluation_time_out():
    plan = schedule.Plan(10, 100, 10, 10, 10)
    meter = progress.Progress("log", 100, plan.epoch, 8, 0)
    meter.last_time -= 1.0  # one second of training for ten steps...
    meter.pause()
    time.sleep(0.5)  # ...then half a second of evaluation
    meter.resume()
    with contextlib.redirect_stdout(io.StringIO()):
        figures = meter.log(10, {"loss": 1.0, "learning_rate": 0.1})
    assert figures["steps_per_sec"] == pytest.approx(10.0, rel=0.1)


def test_evaluation_lines_start_on_their_own_line_under_the_bar(capsys):
    meter = progress.Progress("bar", 10, schedule.Plan(10, 10, 5, 5, 5).epoch, 8, 0)
    meter.advance(5)
    meter.say("eval at step 5: loss 0.5")
    assert "\neval at step 5" in capsys.readouterr().out


def test_loss_plot_stays_readable_when_the_first_evaluation_is_far_above(tmp_path):
    records = [
        {"epoch": 1, "train_loss": 1.2, "eval_loss": 40.0},
        {"epoch": 2, "train_loss": 0.3, "eval_loss": 0.4},
        {"epoch": 3, "train_loss": 0.2, "eval_loss": 0.35},
    ]
    assert plots.loss_scale([r["eval_loss"] for r in records]) == "log"
    assert plots.loss_scale([0.5, 0.4, 0.3]) == "linear"
    written = plots.plot_metrics(records, str(tmp_path))
    assert os.path.basename(written[0]) == "loss.png"


def test_sample_predictions_mark_the_wrong_ones_in_red(tmp_path):
    from PIL import Image

    grey = np.full((24, 20, 20, 1), 0.5, np.float32)  # grey images: any red is the marking
    labels = np.arange(24) % 3

    def red_pixels(predicted, name):
        path = figures.plot_sample_predictions(
            grey, labels, predicted, np.ones(24), ["a", "b", "c"], str(tmp_path / name)
        )
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        return int(((red > 180) & (green < 90) & (blue < 90)).sum())

    assert red_pixels(labels, "right.png") == 0
    wrong = labels.copy()
    wrong[5] = (wrong[5] + 1) % 3
    assert red_pixels(wrong, "one_wrong.png") > 100  # its title and a frame around it


def test_pipeline_stages_are_named_by_their_job(stripes_records):
    """What the input check calls each stage: reads by their source, maps by their function's
    name; shuffles, repeats and prefetches are no stage."""
    from library.monitor.bottleneck import stages_of

    def parse(serialized):
        return tf.io.parse_example(serialized, {"image/class/label": tf.io.FixedLenFeature([], tf.int64)})  # fmt: skip

    files = sorted(str(p) for p in stripes_records.glob("train-*.tfrecord"))
    dataset = tf.data.TFRecordDataset(files).shuffle(8).repeat().batch(4).map(parse).prefetch(1)
    assert [name for name, _ in stages_of(dataset)] == ["read (TFRecord)", "batch", "map parse"]


def test_no_input_verdict_for_a_step_too_short_to_matter_and_a_bfloat16_note_where_emulated():
    from library.monitor import bottleneck

    assert bottleneck.Verdict(10.0, 100.0).line(50.0) is not None  # a real model's step
    # A small MLP: its input of a few columns, hundreds of batches a second, is no bottleneck
    # worth a line, even when the step alone is faster still.
    assert bottleneck.Verdict(400.0, 4000.0).line(300.0) is None
    avx2 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"
    assert not distribute.cpu_computes_bfloat16(avx2)
    assert distribute.cpu_computes_bfloat16(avx2.replace("fma", "fma avx512_bf16"))
    assert distribute.cpu_computes_bfloat16(avx2.replace("fma", "amx_bf16"))


def test_mixed_bfloat16_on_a_cpu_without_its_instructions_is_said_at_the_start(
    stripes_records, tmp_path, monkeypatch
):
    monkeypatch.setattr(distribute, "cpu_computes_bfloat16", lambda: False)
    command = argv(stripes_records, tmp_path, "--train_steps", "2", "--mixed_precision", "mixed_bfloat16")  # fmt: skip
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if "mixed_bfloat16 on this CPU" in line]
    assert len(notes) == 1 and "mixed_precision none is faster here" in notes[0]
