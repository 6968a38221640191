"""The image classifier's own parts, which go when it goes: every encoder and head it offers
trains a step, its models' special parts, its input pipeline and augmentation, its other
inputs (a folder of images, a generator, also through run.py), its learning-rate schedules.
What every project owes is tested in tests/project from the declarations alone."""

import inspect
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import project
from library import ModeKeys, PlanError, config, count_records, encoder_of, export_module
from library.contract import project_functions
from library.engine import schedule, steps
from library.vision.classes import prepare
from library.vision.sample import write_class_tree
from project import custom_ops, encoders, heads, hyperparameters, losses, model, optimizers
from project import inputs as project_inputs
from project.hyperparameters import SCHEDULES

IMAGE_SIZE = 16  # small, and what every encoder of an image project must take
SCHEMA = config.Schema(hyperparameters.HYPERPARAMETERS, hyperparameters.RUN_OPTIONS)


def jpeg_bytes(seed, width=60, height=40):
    """A JPEG of an image with structure (waves and colour), not flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = [127 + 120 * np.sin(rng.uniform(0.05, 0.3) * (x + a * y)) for a in rng.uniform(0, 2, 3)]  # fmt: skip
    out = io.BytesIO()
    Image.fromarray(np.stack(waves, -1).astype(np.uint8), "RGB").save(out, format="JPEG")
    return out.getvalue()


def project_params(**overrides):
    return config.default_params(
        hyperparameters.HYPERPARAMETERS, hyperparameters.RUN_OPTIONS, **overrides
    )


def params_for(records_dir, **overrides):
    values = {
        "train_files": str(records_dir / "train-*.tfrecord"),
        "eval_files": str(records_dir / "eval-*.tfrecord"),
        "image_size": 24,
        "train_batch_size": 8,
        "eval_batch_size": 5,
    }
    return project_params(**{**values, **overrides})


def choices(key):
    return SCHEMA.by_name[key].choices


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    """A pretrained module, for the encoders that take one (hub_handle): the default
    encoder, exported as a reusable SavedModel."""
    params = project_params(image_size=IMAGE_SIZE, num_classes=2)
    encoder = encoder_of(model.model_fn(params), params.encoder_layer)
    return export_module(encoder, str(tmp_path_factory.mktemp("module") / "encoder"))


@pytest.mark.parametrize("head", choices("head"))
@pytest.mark.parametrize("encoder", choices("encoder"))
def test_every_encoder_and_head_trains_a_step(encoder, head, module_dir):
    params = project_params(
        encoder=encoder, head=head, image_size=IMAGE_SIZE, num_classes=3, hub_handle=module_dir
    )
    hyperparameters.check(params)  # what run.py checks first
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, schedule.Plan(10, 10, 10, 10, 10))
    optimizer.build(net.trainable_variables)
    state = steps.StepState()
    train_step = tf.function(steps.one_model_step(net, losses.loss_fn, optimizer, params, state))
    before = [v.numpy().copy() for v in net.trainable_variables]
    images = tf.random.uniform([4, IMAGE_SIZE, IMAGE_SIZE, 3])
    train_step(({"image": images}, tf.constant([0, 1, 2, 0])))
    assert int(optimizer.iterations) == 1 and np.isfinite(float(state.log_loss.result()))
    changed = [
        not np.array_equal(a, b.numpy())
        for a, b in zip(before, net.trainable_variables, strict=True)
    ]
    assert all(changed)  # every variable got a gradient
    assert net.output_shape == (None, 3)


def test_the_choices_are_the_functions_the_project_provides():
    """The names checked before TensorFlow loads are the project's real functions."""

    def functions_of(module):
        return {
            name
            for name, f in vars(module).items()
            if inspect.isfunction(f) and f.__module__ == module.__name__
        }

    assert set(choices("encoder")) <= functions_of(encoders)
    assert set(choices("head")) <= functions_of(heads)
    assert set(model.metrics_fn(project_params())) == set(hyperparameters.METRICS)


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n\\+2"):
        model.model_fn(
            project_params(encoder="resnet", resnet_depth=10, num_classes=2, image_size=8)
        )


def test_custom_gradient_is_the_hand_written_one():
    # Where automatic differentiation works, the hand-written gradient agrees with it...
    x = tf.constant(np.linspace(-8, 8, 41), tf.float32)
    upstream = tf.constant(np.random.default_rng(0).normal(size=41), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        custom = custom_ops.custom_sigmoid(x)
        reference = tf.sigmoid(x)
    np.testing.assert_allclose(custom.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        tape.gradient(custom, x, upstream).numpy(),
        tape.gradient(reference, x, upstream).numpy(),
        rtol=1e-5,
        atol=1e-7,
    )
    # ...and where autodiff of the same formula fails, it does not: at x = -100, exp(100)
    # overflows float32 and d/dx 1 / (1 + exp(-x)) is inf * 0 = NaN; y * (1 - y) is 0.
    far = tf.constant([-100.0])
    with tf.GradientTape() as tape:
        tape.watch(far)
        y = custom_ops.custom_sigmoid(far)
    np.testing.assert_array_equal(tape.gradient(y, far).numpy(), [0.0])


def test_the_gated_head_trains_through_the_hand_written_gradient():
    """A gate saturated far off (pre-activation -100) still gives finite gradients."""
    gate = custom_ops.SigmoidGate()
    features = tf.ones([2, 3])
    gate.build(features.shape)
    gate.dense.kernel.assign(tf.fill([3, 3], -100.0 / 3))
    gate.dense.bias.assign(tf.zeros([3]))
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(gate(features))
    grads = tape.gradient(out, gate.trainable_variables)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    # The gate's graph holds the op tf.custom_gradient registers its gradient on.
    graph = tf.function(gate).get_concrete_function(tf.TensorSpec([2, 3])).graph
    assert any("_gradient_op_type" in op.node_def.attr for op in graph.get_operations())


def rates(schedule, steps):
    return [float(schedule(step) if callable(schedule) else schedule) for step in steps]


@pytest.mark.parametrize("lr_schedule", SCHEDULES)
def test_warmup_ramps_up_with_every_schedule_and_with_train_steps(lr_schedule):
    params = project_params(
        learning_rate=0.1, lr_schedule=lr_schedule, warmup_epochs=1.0, train_steps=100,
        lr_boundaries=[5.0], lr_values=[0.1, 0.01],
    )  # fmt: skip
    plan = schedule.make_plan(params, train_records=10 * params.train_batch_size)
    assert plan.steps_per_epoch == 10 and plan.train_steps == 100  # train_steps wins...
    warm = rates(optimizers.learning_rate_fn(params, plan), range(12))
    cold = rates(optimizers.learning_rate_fn(params.replace(warmup_epochs=0.0), plan), range(12))
    # ...and warm-up still lasts one epoch (10 steps): a ramp of (step + 1) / 10.
    np.testing.assert_allclose(
        warm[:10], [c * (s + 1) / 10 for s, c in enumerate(cold[:10])], rtol=1e-5
    )
    np.testing.assert_allclose(warm[9:], cold[9:], rtol=1e-6)
    assert warm[0] == pytest.approx(0.01, rel=1e-5)
    if lr_schedule == "cosine":
        assert rates(optimizers.learning_rate_fn(params, plan), [100])[0] < 1e-6  # decays to 0


@pytest.mark.parametrize("lr_schedule", ["exponential", "piecewise"])
def test_a_schedule_in_epochs_in_a_run_whose_epochs_are_not_counted_is_one_line(lr_schedule):
    params = project_params(lr_schedule=lr_schedule, lr_boundaries=[2.0], lr_values=[0.1, 0.01])
    plan = schedule.Plan(0, 100, 10, 10, 100)  # a run in steps, no record count
    with pytest.raises(PlanError, match="epochs: the records of an epoch are not counted"):
        optimizers.learning_rate_fn(params, plan)


def test_project_preprocessing_sizes_normalises_and_is_stateless():
    params = project_params(image_size=16, eval_crop_fraction=1.0, train_crop_min_area=0.3)
    jpeg = tf.constant(jpeg_bytes(seed=3))
    decoded = project_inputs.preprocess_eval(jpeg, params)
    assert decoded.shape == (16, 16, 3) and decoded.dtype == tf.float32
    assert float(tf.reduce_min(decoded)) >= 0.0 and float(tf.reduce_max(decoded)) <= 1.0
    assert float(tf.reduce_max(decoded)) > 0.5  # pixel values divided by 255, not twice
    seed = tf.constant([1, 2], tf.int64)
    trained = project_inputs.preprocess_train(jpeg, seed, params)
    assert trained.shape == (16, 16, 3)
    again = project_inputs.preprocess_train(jpeg, seed, params)
    np.testing.assert_array_equal(trained.numpy(), again.numpy())  # stateless: same seed, same crop
    other = project_inputs.preprocess_train(jpeg, tf.constant([3, 4], tf.int64), params)
    assert not np.array_equal(trained.numpy(), other.numpy())


def test_training_input_fn_yields_right_shapes_dtypes_and_labels(records):
    params = params_for(records)
    dataset = project_inputs.input_fn(params.train_files, ModeKeys.TRAIN, params)
    assert sum(1 for _ in dataset.take(13)) == 13  # repeats: 6 batches make an epoch
    for features, labels in dataset.take(3):
        assert features["image"].shape == (8, 24, 24, 3)
        assert features["image"].dtype == tf.float32
        assert labels.dtype == tf.int32 and set(labels.numpy()) <= {0, 1}


def test_eval_input_fn_reads_every_record_once_with_its_label(records):
    params = params_for(records)
    dataset = project_inputs.input_fn(params.eval_files, ModeKeys.EVAL, params)
    names, labels = [], []
    for features, batch_labels in dataset:
        names += [n.decode() for n in features["filename"].numpy()]
        labels += batch_labels.numpy().tolist()
    assert len(names) == len(set(names)) == count_records(params.eval_files) == 16
    for name, label in zip(names, labels, strict=True):
        assert label == (0 if name.startswith("horizontal/") else 1)


def test_folder_input_fn_reads_images_without_conversion(tmp_path, records):
    write_class_tree(str(tmp_path / "img"), per_class=3)
    (tmp_path / "labels.txt").write_text("horizontal\nvertical\n")
    params = params_for(records, labels_file=str(tmp_path / "labels.txt"), eval_batch_size=6)
    params = prepare(params)  # run.py's prepare_fn: the classes of the labels file
    dataset = project_inputs.folder_input_fn(str(tmp_path / "img/*/*.jpg"), ModeKeys.EVAL, params)
    features, labels = next(iter(dataset))
    assert features["image"].shape == (6, 24, 24, 3)
    for name, label in zip(features["filename"].numpy(), labels.numpy(), strict=True):
        assert label == (0 if b"/horizontal/" in name else 1)


def test_generator_input_fn_yields_python_made_batches():
    params = project_params(image_size=12, train_batch_size=4, eval_batch_size=4)
    features, labels = next(iter(project_inputs.generator_input_fn("", ModeKeys.TRAIN, params)))
    assert features["image"].shape == (4, 12, 12, 3) and labels.dtype == tf.int32
    evaluation = project_inputs.generator_input_fn("", ModeKeys.EVAL, params)
    first = [b[1].numpy().tolist() for b in evaluation]
    second = [b[1].numpy().tolist() for b in evaluation]
    assert first == second and len(first) == 4  # a fixed, finite evaluation stream


def test_resnet_preactivation_blocks_train_a_step():
    params = project_params(
        encoder="resnet", resnet_depth=8, resnet_preactivation=True, image_size=16, num_classes=3
    )
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, schedule.Plan(10, 10, 10, 10, 10))
    optimizer.build(net.trainable_variables)
    step = tf.function(
        steps.one_model_step(net, losses.loss_fn, optimizer, params, steps.StepState())
    )
    before = [v.numpy().copy() for v in net.trainable_variables]
    step(({"image": tf.random.uniform([4, 16, 16, 3])}, tf.constant([0, 1, 2, 0])))
    assert all(
        not np.array_equal(a, b.numpy())
        for a, b in zip(before, net.trainable_variables, strict=True)
    )


def test_piecewise_rates_change_at_the_boundaries():
    plan = schedule.Plan(10, 60, 10, 10, 10)
    params = project_params(
        lr_schedule="piecewise", lr_boundaries="[2, 4]", lr_values="[0.1, 0.01, 0.001]"
    )
    rate = optimizers.learning_rate_fn(params, plan)
    at = {step: float(rate(step)) for step in (0, 19, 20, 39, 40, 59)}
    assert at == pytest.approx({0: 0.1, 19: 0.1, 20: 0.01, 39: 0.01, 40: 0.001, 59: 0.001})


def test_onednn_is_off_only_for_a_fine_tuned_module():
    assert not hyperparameters.onednn_off(project_params())
    assert hyperparameters.onednn_off(project_params(encoder="hub", hub_handle="m"))
    assert not hyperparameters.onednn_off(
        project_params(encoder="hub", hub_handle="m", fine_tuning=False)
    )


def test_the_generator_input_trains_and_evaluates_through_run_py(tmp_path, capsys):
    """Wiring ``input_fn=inputs.generator_input_fn`` in project/__init__.py is all it takes
    to train on data made in Python: no files, lengths in steps."""
    import types

    from library import main

    generated = types.ModuleType("project")
    generated.__dict__.update(vars(project))
    functions = project_functions(project).replace(input_fn=project_inputs.generator_input_fn)
    generated.load_functions = lambda: functions
    argv = [
        "--train_files", "", "--eval_files", "", "--train_steps", "4",
        "--steps_between_evals", "2", "--train_batch_size", "8", "--eval_batch_size", "8",
        "--image_size", "16", "--num_classes", "2", "--progress", "log",
        "--input_check", "false", "--best_saved_model", "false", "--plots", "false",
        "--model_dir", str(tmp_path / "model"), "--best_model_dir", str(tmp_path / "best"),
    ]  # fmt: skip
    assert main(argv, generated) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "eval at step 2" in printed and "eval at step 4" in printed


def test_a_label_outside_the_classes_stops_the_loss_with_its_value():
    logits = tf.zeros([3, 2])
    params = project_params(num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        tf.function(losses.loss_fn)(tf.constant([0, 7, 1]), logits, params)
    assert "[label] [7] [is outside the 2 classes (num_classes): labels are 0 to 1" in str(raised.value)  # fmt: skip
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[label\] \[-1\]"):
        tf.function(losses.loss_fn)(tf.constant([-1, 0, 1]), logits, params)
    assert losses.loss_fn(tf.constant([0, 1, 1]), logits, params).shape == (3,)


def test_weight_decay_shrinks_weights_apart_from_the_loss():
    """AdamW's decay (weight_decay) moves a weight whose gradient is zero by rate x decay;
    without it the weight stays."""
    plan = schedule.Plan(10, 10, 10, 10, 10)
    moved = {}
    for decay in (0.0, 0.5):
        params = project_params(lr_schedule="constant", learning_rate=0.1, weight_decay=decay)
        optimizer = optimizers.optimizer_fn(params, plan)
        weight = tf.Variable([1.0, -2.0])
        optimizer.apply_gradients([(tf.zeros([2]), weight)])
        moved[decay] = weight.numpy()
    np.testing.assert_allclose(moved[0.0], [1.0, -2.0])
    np.testing.assert_allclose(moved[0.5], [0.95, -1.9], rtol=1e-6)
