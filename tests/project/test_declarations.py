"""The project checked from its own declarations (project/hyperparameters.py): every encoder
and head its schema offers builds and trains a step, every metric best_metric may name is
measured, every set resolves, every hyperparameter is read. Nothing here lists them by hand:
a project that grows is tested as it grows."""

import glob
import inspect
import os
import re
import typing

import numpy as np
import pytest
import tensorflow as tf
from support import ROOT

import run
from library import config
from library.config.reference import markdown_reference
from library.contract import Functions, ModeKeys
from library.engine import schedule, steps
from library.engine.evaluator import Evaluator
from library.transfer import hub
from project import encoders, heads, hyperparameters, inputs, losses, model, optimizers

SCHEMA = config.Schema(hyperparameters.HYPERPARAMETERS, hyperparameters.RUN_OPTIONS)
PROJECT_FILE = os.path.join(ROOT, "project.yaml")
IMAGE_SIZE = 16  # small, and what every encoder of an image project must take


def choices(key):
    return SCHEMA.by_name[key].choices


def project_params(**overrides):
    return config.default_params(
        hyperparameters.HYPERPARAMETERS, hyperparameters.RUN_OPTIONS, **overrides
    )


def functions():
    return Functions.from_mapping(run.load_project())


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    """A pretrained module, for the encoders that take one (hub_handle): the default
    encoder, exported as a reusable SavedModel."""
    params = project_params(image_size=IMAGE_SIZE, num_classes=2)
    encoder = hub.encoder_of(model.model_fn(params), params.encoder_layer)
    return hub.export_module(encoder, str(tmp_path_factory.mktemp("module") / "encoder"))


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
    train_step = tf.function(steps.build_train_step(net, losses.loss_fn, optimizer, params, state))
    before = [v.numpy().copy() for v in net.trainable_variables]
    images = tf.random.uniform([4, IMAGE_SIZE, IMAGE_SIZE, 3])
    train_step({"image": images}, tf.constant([0, 1, 2, 0]))
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


@pytest.mark.parametrize("metric", hyperparameters.METRICS)
def test_every_metric_best_metric_may_name_is_an_evaluation_result(metric, stripes_records):
    params = project_params(
        train_files=str(stripes_records / "train-*.tfrecord"), image_size=IMAGE_SIZE,
        eval_batch_size=8,
    )  # fmt: skip
    params = functions().prepare_fn(params)  # the classes of the records' labels file
    evaluator = Evaluator(functions(), params, tf.distribute.get_strategy())
    pattern = str(stripes_records / "eval-*.tfrecord")
    results = evaluator.evaluate(
        model.model_fn(params), lambda: inputs.input_fn(pattern, ModeKeys.EVAL, params)
    )
    assert np.isfinite(results[metric]), results
    # And a configuration may pick the best checkpoint by it.
    picked, _ = config.resolve(
        ["--project_file", PROJECT_FILE, "--best_metric", metric],
        hyperparameters.HYPERPARAMETERS,
        metrics=hyperparameters.METRICS,
        run_options=hyperparameters.RUN_OPTIONS,
    )
    assert picked.best_metric == metric


def resolve(*argv):
    params, _ = config.resolve(
        ["--project_file", PROJECT_FILE, *argv],
        hyperparameters.HYPERPARAMETERS,
        metrics=hyperparameters.METRICS,
        check=hyperparameters.check,
        run_options=hyperparameters.RUN_OPTIONS,
    )
    return params


@pytest.mark.parametrize("name", list(config.load_sets(PROJECT_FILE)))
def test_every_set_of_project_yaml_resolves(name):
    assert resolve("--config_set", name).config_set == name


@pytest.mark.parametrize("name", list(config.load_sets(os.path.join(ROOT, "hyperparameters.yaml"))))
def test_every_set_of_hyperparameters_yaml_resolves_and_builds(name, module_dir):
    params = resolve("--hyperparameter_set", name)
    changes = {"image_size": IMAGE_SIZE, "num_classes": 2}
    if "hub_handle" in params and params.hub_handle:  # a module made elsewhere: ours instead
        changes["hub_handle"] = module_dir
    net = model.model_fn(params.replace(**changes))
    assert net.output_shape == (None, 2)


def test_schema_defaults_have_their_declared_types():
    for field in SCHEMA.fields:
        assert config.plain(config.coerce(field, field.default, "schema")) == field.default
        container = typing.get_origin(field.type) or field.type
        assert isinstance(field.default, container), field.name
        if container in (list, dict):  # list[float], dict[str, float]: each item too
            items = field.default.values() if container is dict else field.default
            assert all(isinstance(v, typing.get_args(field.type)[-1]) for v in items), field.name


def test_every_hyperparameter_is_read_by_the_project():
    """A key nothing reads is a promise nothing keeps: each hyperparameter is read as
    params.KEY or params["KEY"] somewhere in project/."""
    sources = ""
    for path in glob.glob(os.path.join(ROOT, "project", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as stream:
            sources += stream.read()
    unread = [
        field.name
        for field in hyperparameters.HYPERPARAMETERS
        if not re.search(rf"params(\.{field.name}\b|\[\"{field.name}\"\])", sources)
    ]
    assert unread == [], f"hyperparameters read by nothing: {unread}"


def test_the_configuration_reference_is_current():
    with open(os.path.join(ROOT, "docs", "configuration.md"), encoding="utf-8") as stream:
        readme = stream.read()
    reference = markdown_reference(hyperparameters.HYPERPARAMETERS, hyperparameters.RUN_OPTIONS)
    assert reference in readme, (
        "docs/configuration.md's reference is stale: regenerate it with `make docs`"
    )
