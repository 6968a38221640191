"""Transfer learning: hub modules under Keras 3, warm start by name, lr_mult, inspect, export."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from projects.classifier import functions, hyperparameters
from support import argv, one_line, params, run_cli

from library.cli import command_line as cli
from library.engine import steps
from library.transfer import hub, warm_start
from library.transfer import names as transfer

IMAGES = {"image": tf.random.uniform([8, 16, 16, 3], seed=7)}
LABELS = tf.constant([0, 1] * 4)


def write_tf_keras_module(path):
    """An image module as TF Hub ships them: a tf_keras model saved with tf.saved_model.save
    (the TF2 reusable-SavedModel interface), with batch norm and an L2 regularizer."""
    import tf_keras

    layers = tf_keras.layers
    images = tf_keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, strides=2, kernel_regularizer=tf_keras.regularizers.L2(0.01))(images)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    tf.saved_model.save(tf_keras.Model(images, layers.GlobalAveragePooling2D()(x)), path)
    return path


@pytest.fixture(scope="module")
def module_path(tmp_path_factory):
    return write_tf_keras_module(str(tmp_path_factory.mktemp("hub") / "module"))


def model_params(**overrides):
    """A model with dropout: its random state is a variable that is no weight."""
    return params(None, None, **{"num_classes": 2, "dropout_rate": 0.2, **overrides})


def hub_params(handle, fine_tuning, **overrides):
    return model_params(encoder="hub", hub_handle=handle, fine_tuning=fine_tuning, **overrides)


def train(net, run_params, count=3, variables=None, scales=None, optimizer=None):
    """``count`` steps of the library's train step."""
    optimizer = optimizer or keras.optimizers.SGD(0.1)
    variables = list(net.trainable_variables if variables is None else variables)
    optimizer.build(variables)
    state = steps.StepState()
    step = tf.function(
        steps.one_model_step(
            net, functions.loss_fn, optimizer, run_params, state, variables, scales
        )
    )
    for _ in range(count):
        step((IMAGES, LABELS))


def hub_values(net):
    return {v.path: v.numpy().copy() for v in net.variables if v.path.startswith("hub/")}


def test_a_fine_tuned_hub_module_trains_weights_statistics_and_regularization(module_path):
    net = functions.model_fn(hub_params(module_path, fine_tuning=True))
    trainable = {v.path for v in net.trainable_variables}
    assert {"hub/conv2d/kernel", "hub/batch_normalization/gamma"} <= trainable
    assert "hub/batch_normalization/moving_mean" not in trainable
    net(IMAGES, training=True)
    module = tf.saved_model.load(module_path)
    expected = sum(float(loss()) for loss in module.regularization_losses)
    assert expected > 0
    np.testing.assert_allclose(sum(float(x) for x in net.losses), expected, rtol=1e-5)
    before = hub_values(net)
    train(net, hub_params(module_path, True))
    after = hub_values(net)
    assert len(before) == 6  # kernel, bias, gamma, beta, moving mean and variance
    for path, value in before.items():  # batch norm's statistics moved too: training mode
        assert not np.array_equal(value, after[path]), path


def test_a_frozen_hub_module_stays_bit_identical(module_path):
    net = functions.model_fn(hub_params(module_path, fine_tuning=False))
    assert not [v.path for v in net.trainable_variables if v.path.startswith("hub/")]
    net(IMAGES, training=True)
    assert sum(float(x) for x in net.losses) == 0.0  # no regularization of frozen weights
    before = hub_values(net)
    logits_before = net.get_layer("logits").kernel.numpy().copy()
    train(net, hub_params(module_path, False))
    for path, value in hub_values(net).items():
        np.testing.assert_array_equal(value, before[path], err_msg=path)
    assert not np.array_equal(logits_before, net.get_layer("logits").kernel.numpy())


def test_a_checkpoint_holds_the_fine_tuned_module(module_path, tmp_path):
    run_params = hub_params(module_path, True)
    trained = functions.model_fn(run_params)
    train(trained, run_params)
    prefix = tf.train.Checkpoint(model=trained).save(str(tmp_path / "ckpt"))
    fresh = functions.model_fn(run_params)  # the module as shipped
    assert not np.array_equal(hub_values(fresh)["hub/conv2d/kernel"], hub_values(trained)["hub/conv2d/kernel"])  # fmt: skip
    tf.train.Checkpoint(model=fresh).restore(prefix).assert_existing_objects_matched()
    for path, value in hub_values(trained).items():
        np.testing.assert_array_equal(hub_values(fresh)[path], value, err_msg=path)
    # A new run can warm start from it by name, the module's variables included.
    warm = functions.model_fn(run_params)
    warm_start.warm_start(warm, prefix, say=lambda line: None)
    for path, value in hub_values(trained).items():
        np.testing.assert_array_equal(hub_values(warm)[path], value, err_msg=path)


def test_names_do_not_depend_on_what_was_built_before():
    run_params = model_params()
    first = transfer.variable_names(functions.model_fn(run_params))
    functions.model_fn(run_params)  # Keras' counters move on: conv2d_6, ...
    again = functions.model_fn(run_params)
    assert again.variables[0].path != "conv2d/kernel"  # the raw path did change
    assert transfer.variable_names(again) == first
    assert first[:3] == ["conv2d/kernel", "batch_normalization/gamma", "batch_normalization/beta"]
    assert first[-2:] == ["logits/kernel", "logits/bias"]
    # Names a user gave are kept even when they look like counters.
    assert transfer.canonical_names(["block1_2/kernel", "dense_4/kernel", "dense_7/bias"]) == [
        "block1_2/kernel",
        "dense/kernel",
        "dense_1/bias",
    ]


def write_tf1_checkpoint(prefix, values):
    """A name-based checkpoint as tf.estimator and TF1's Saver left them."""
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable(n, initializer=v) for n, v in values.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, prefix)


def tf1_values_for(net):
    """Random values under TF1 names: our names, with the classifier called ``dense``."""
    rng = np.random.default_rng(0)
    values = {}
    for name, variable in zip(transfer.variable_names(net), net.variables, strict=True):
        if transfer.is_weight(name):  # dropout's random state is no weight
            random = rng.normal(size=variable.shape)
            values[name.replace("logits/", "dense/")] = random.astype(np.float32)
    return values


def test_warm_start_from_a_tf1_checkpoint_through_a_name_map(tmp_path):
    run_params = model_params()
    net = functions.model_fn(run_params)
    values = tf1_values_for(net)
    prefix = write_tf1_checkpoint(str(tmp_path / "tf1" / "model.ckpt"), values)
    lines = []
    first = net.variables[0].numpy().copy()  # conv2d/kernel: found in the source
    with pytest.raises(transfer.TransferError, match=r"logits/kernel .*not in .*name_map"):
        warm_start.warm_start(net, prefix, say=lines.append)
    np.testing.assert_array_equal(net.variables[0].numpy(), first)  # nothing assigned on failure
    count = warm_start.warm_start(net, prefix, ".*", {"^logits/": "dense/"}, lines.append)
    assert count == len(values) == len(net.variables) - 1  # dropout's random state aside
    for name, variable in zip(transfer.variable_names(net), net.variables, strict=True):
        if transfer.is_weight(name):
            np.testing.assert_array_equal(
                variable.numpy(), values[name.replace("logits/", "dense/")]
            )
    assert f"{count} of {count} variables" in lines[-1] and "TF1 checkpoint" in lines[-1]
    # A selection takes only what it names; a different shape is an error naming it.
    other = functions.model_fn(run_params.replace(num_classes=3))
    with pytest.raises(transfer.TransferError, match=r"logits/kernel has shape \[8, 3\]"):
        warm_start.warm_start(other, prefix, ".*", {"^logits/": "dense/"}, lines.append)
    assert warm_start.warm_start(other, prefix, "^(?!logits/)", {}, lines.append) == count - 2


def test_warm_start_from_this_projects_checkpoint_and_a_saved_model(tmp_path):
    run_params = model_params()
    source = functions.model_fn(run_params)
    for variable in source.variables:
        variable.assign(tf.random.normal(variable.shape, seed=3))
    tf.train.Checkpoint(model=source).save(str(tmp_path / "ours" / "ckpt"))
    target = functions.model_fn(run_params)  # built later: its raw names carry other counters
    warm_start.warm_start(target, str(tmp_path / "ours"), say=lambda line: None)
    for ours, theirs in zip(target.variables, source.variables, strict=True):
        if "seed_generator" not in ours.path:
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    encoder_dir = str(tmp_path / "encoder")
    hub.export_module(hub.encoder_of(source, "features"), encoder_dir)
    fresh = functions.model_fn(run_params)
    taken = warm_start.warm_start(fresh, encoder_dir, "^(?!logits/)", say=lambda line: None)
    assert taken == len(fresh.variables) - 3  # logits and dropout's random state aside
    np.testing.assert_array_equal(fresh.variables[0].numpy(), source.variables[0].numpy())
    with pytest.raises(transfer.TransferError, match="no such checkpoint"):
        warm_start.warm_start(fresh, str(tmp_path / "missing" / "ckpt"))


def test_lr_mult_zero_freezes_and_a_tenth_moves_a_tenth_as_far():
    run_params = model_params(dropout_rate=0.0)
    reference = functions.model_fn(run_params)
    lines = []

    def moved(lr_mult, count):
        net = functions.model_fn(run_params)
        net.set_weights(reference.get_weights())
        variables, scales = warm_start.update_scales(net, lr_mult, lines.append)
        names = transfer.variable_names(net)
        before = {n: v.numpy().copy() for n, v in zip(names, net.variables, strict=True)}
        train(net, run_params, count, variables, scales)
        return {n: v.numpy() - before[n] for n, v in zip(names, net.variables, strict=True)}

    plain = moved({}, 1)
    scaled = moved({"^conv2d/": 0.0, "^logits/": 0.1}, 1)
    assert not np.any(scaled["conv2d/kernel"]) and np.any(plain["conv2d/kernel"])
    # Each move is a difference of float32 weights (up to about 0.5): exact to a few of their
    # ulps (6e-8), not to 1e-4 of a move of 2e-4; the reference weights are random.
    np.testing.assert_allclose(scaled["logits/kernel"], 0.1 * plain["logits/kernel"], rtol=1e-4, atol=1e-7)  # fmt: skip
    assert "lr_mult '^conv2d/': x0 on 1 variables (216 parameters)" in lines
    frozen_out, _ = warm_start.update_scales(reference, {"^conv2d/": 0.0}, lines.append)
    assert reference.variables[0].path not in {v.path for v in frozen_out}  # conv2d/kernel
    several = moved({"^conv2d/": 0.0}, 4)
    assert not np.any(several["conv2d/kernel"])  # bit-identical after several steps
    with pytest.raises(transfer.TransferError, match="matches no trainable variable"):
        warm_start.update_scales(reference, {"^encoder/": 0.5})


def test_inspect_lists_names_shapes_and_dtypes(tmp_path):
    run_params = model_params()
    lines = transfer.inspect_model(functions.model_fn(run_params))
    assert lines[0] == "conv2d/kernel [3,3,3,8] float32"
    assert lines[-1] == "logits/bias [2] float32"
    prefix = write_tf1_checkpoint(
        str(tmp_path / "model.ckpt"), {"dense/kernel": np.zeros((4, 2), np.float32)}
    )
    assert transfer.inspect_path(prefix) == ["dense/kernel [4,2] float32"]
    ours = tf.train.Checkpoint(model=functions.model_fn(run_params)).save(str(tmp_path / "ours"))
    listed = transfer.inspect_path(ours)
    assert listed[0] == "save_counter [] int64"  # the checkpoint's own counter, then the model's
    assert listed[1:] == lines


def test_run_py_warm_starts_once_freezes_exports_an_encoder_and_inspects(
    stripes_records, tmp_path, module_path
):
    common = argv(stripes_records, tmp_path, "--dropout_rate", "0.2")
    values = tf1_values_for(functions.model_fn(model_params()))
    prefix = write_tf1_checkpoint(str(tmp_path / "tf1" / "model.ckpt"), values)
    refused = run_cli(*common, "--warm_start_from", prefix)
    assert refused.returncode == 2, refused.stderr
    assert "logits/kernel (looked up as 'logits/kernel') is not in" in one_line(refused.stderr)
    frozen = ["--lr_mult", "{'^conv2d/': 0}", "--warm_start_name_map", "{'^logits/': 'dense/'}"]
    first = run_cli(*common, "--warm_start_from", prefix, *frozen)
    assert first.returncode == 0, first.stderr
    assert f"warm start: {len(values)} of {len(values)} variables" in first.stdout
    assert "lr_mult '^conv2d/': x0 on 1 variables (216 parameters)" in first.stdout
    assert "oneDNN off" not in first.stdout  # a model that needs no workaround keeps oneDNN
    trained = transfer.read_source(str(tmp_path / "model"))
    np.testing.assert_array_equal(trained.value("conv2d/kernel"), values["conv2d/kernel"])
    assert not np.array_equal(trained.value("logits/kernel"), values["dense/kernel"])
    again = run_cli(*common, "--train_steps", "6", "--warm_start_from", prefix, *frozen)
    assert again.returncode == 0, again.stderr
    assert "warm_start_from ignored" in again.stdout and "resuming from" in again.stdout
    assert "warm start:" not in again.stdout  # restored once, then resumed
    exported = run_cli(*common, "--mode", "export_encoder")
    assert exported.returncode == 0, exported.stderr
    encoder_dir = str(tmp_path / "model" / "encoder")
    assert f"as a reusable SavedModel: {encoder_dir}" in exported.stdout
    inspected = run_cli(*common, "--mode", "inspect", "--encoder", "hub", "--hub_handle", encoder_dir)  # fmt: skip
    assert inspected.returncode == 0, inspected.stderr
    listed = [line for line in inspected.stdout.splitlines() if line.startswith("hub/")]
    assert listed[0] == "hub/conv2d/kernel [3,3,3,8] float32", inspected.stdout
    module = hub.HubModule(encoder_dir, trainable=False)
    np.testing.assert_array_equal(module.adopted[0].numpy(), values["conv2d/kernel"])


def test_a_fine_tuned_module_is_exported_whole_and_a_switch_to_frozen_is_refused(
    stripes_records, tmp_path, module_path
):
    hub_run = argv(
        stripes_records, tmp_path, "--encoder", "hub", "--hub_handle", module_path,
        "--best_saved_model", "true",
    )  # fmt: skip
    fine_tune = run_cli(*hub_run)
    assert fine_tune.returncode == 0, fine_tune.stderr
    assert "oneDNN off for this run" in fine_tune.stdout  # what the project declares at risk
    # The whole model, module inside, exported as the best SavedModel.
    assert os.path.exists(os.path.join(tmp_path, "best", "saved_model", "saved_model.pb"))
    switched = run_cli(*hub_run, "--train_steps", "6", "--fine_tuning", "false")
    assert switched.returncode == 2, switched.stderr
    assert "what trains changed (a part frozen or unfrozen" in one_line(switched.stderr)
    resumed = run_cli(*hub_run, "--train_steps", "6")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "at step 4" in resumed.stdout


def test_a_missing_hub_handle_is_one_line(tmp_path):
    result = run_cli(*argv(None, None, "--encoder", "hub"))
    assert result.returncode == 2 and "hub_handle" in one_line(result.stderr)
    with pytest.raises(hub.HubError, match="no SavedModel folder"):
        hub.HubModule(str(tmp_path / "nothing" / "here"))


def test_onednn_is_turned_off_before_tensorflow_only_where_needed(monkeypatch):
    onednn_off = hyperparameters.onednn_off

    def chosen(environment=None, **values):
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
        if environment is not None:
            monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", environment)
        cli._choose_onednn([params(**values)], onednn_off, "run.py")
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS")

    assert chosen() is None  # a model the project says is safe: oneDNN stays on
    assert chosen(encoder="hub", hub_handle="m", fine_tuning=True) == "0"
    assert chosen(encoder="hub", hub_handle="m", fine_tuning=False) is None
    assert chosen(encoder="hub", hub_handle="m", onednn="on") is None
    assert chosen(onednn="off") == "0"
    assert chosen("1", encoder="hub", hub_handle="m") == "1"  # the user's own setting wins
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    frozen = params(encoder="hub", hub_handle="m", fine_tuning=False)
    cli._choose_onednn([frozen, frozen.replace(fine_tuning=True)], onednn_off, "run.py")
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0"  # a sweep with one value at risk
    cli._choose_onednn([frozen], None, "run.py")  # a project that declares nothing at risk
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    cli._choose_onednn([frozen.replace(fine_tuning=True)], None, "run.py")
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") is None
