"""The strategy seam: the whole loop under MirroredStrategy over two logical CPU devices,
and the NaN guard deciding for all replicas at once."""

import json
import subprocess
import sys

import numpy as np
from support import ROOT

# Logical devices must be configured before TensorFlow initialises: a process of its own.
MIRRORED_RUN = r"""
import json, os, sys
sys.path[:0] = [{root!r}, os.path.join({root!r}, "tests")]
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from support import params as project_params
from library.data import pipeline as inputs
from library.engine import distribute, schedule, steps
from library.engine.estimator import Estimator, EvalSpec, TrainSpec, train_and_evaluate
from library.recorders import metrics_log as summaries
from projects.classifier import functions as model
losses = model

images = tf.random.stateless_uniform([64, 8, 8, 3], [1, 2])
labels = tf.cast(tf.reduce_mean(images[..., 0], axis=[1, 2]) > 0.5, tf.int32)

def model_fn(params):
    # No batch norm: its statistics are per replica, which is not what this test is about.
    x = inputs_ = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model({{"image": inputs_}}, keras.layers.Dense(2, name="logits")(x))

def optimizer_fn(params, plan):
    # Plain SGD: unlike Adam, it moves twice as far when replicas double the gradient.
    return keras.optimizers.SGD(params.learning_rate)

def input_fn(training):
    def make(input_context=None):
        dataset = tf.data.Dataset.from_tensor_slices(({{"image": images}}, labels))
        dataset = dataset.repeat() if training else dataset
        return dataset.batch(inputs.replica_batch_size(8, input_context), drop_remainder=training)
    return make

def run(strategy, folder):
    params = project_params(
        model_dir=os.path.join({work!r}, folder), best_model_dir=os.path.join({work!r}, folder + "-best"),
        train_batch_size=8, eval_batch_size=8, num_classes=2, steps_between_evals=1, log_steps=1,
        learning_rate=0.5, progress="log",
    )
    plan = schedule.make_plan(params, 64)
    estimator = Estimator(model_fn, losses.loss_fn, optimizer_fn, params,
                          metrics_fn=model.metrics_fn, plan=plan, strategy=strategy, say=lambda line: None)
    train_and_evaluate(estimator, TrainSpec(input_fn(True), 6), EvalSpec(input_fn(False)))
    return {{"replicas": strategy.num_replicas_in_sync,
             "metrics": summaries.read_metrics(params.model_dir)}}

def nan_on_one_replica(strategy):
    # Example 5 of the batch (on the second replica only) is NaN: both must skip the step.
    params = project_params(num_classes=2)
    with strategy.scope():
        net, optimizer, state = model_fn(params), optimizer_fn(params.replace(learning_rate=0.5), None), steps.StepState()
        optimizer.build(net.trainable_variables)
    train_step = steps.one_model_step(net, losses.loss_fn, optimizer, params, state)
    train_loop = steps.build_train_loop(strategy, train_step, state)
    poisoned = tf.tensor_scatter_nd_update(images[:8], [[5, 0, 0, 0]], [float("nan")])
    dataset = tf.data.Dataset.from_tensor_slices(({{"image": poisoned}}, labels[:8]))
    iterator = iter(distribute.distribute_dataset(
        strategy, lambda ctx: dataset.batch(inputs.replica_batch_size(8, ctx))))
    before = [v.numpy().copy() for v in net.variables]
    in_a_row = int(train_loop(iterator, tf.constant(1, tf.int64)))
    copies = [[t.numpy() for t in v.value.values] for v in net.variables]
    return {{"in_a_row": in_a_row, "iterations": int(optimizer.iterations.numpy()),
             "unchanged": all(np.array_equal(b, c) for b, cs in zip(before, copies) for c in cs)}}

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print(json.dumps({{"one": run(tf.distribute.OneDeviceStrategy("/cpu:0"), "one"),
                   "mirrored": run(mirrored, "mirrored"),
                   "nan": nan_on_one_replica(mirrored)}}))
"""


def test_mirrored_two_devices_follow_the_one_device_trajectory(tmp_path):
    code = MIRRORED_RUN.format(root=ROOT, work=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["one"]["replicas"] == 1 and runs["mirrored"]["replicas"] == 2
    one, mirrored = runs["one"]["metrics"], runs["mirrored"]["metrics"]
    assert [r["step"] for r in one] == [r["step"] for r in mirrored] == [1, 2, 3, 4, 5, 6]
    for key in ("train_loss", "eval_loss", "eval_accuracy"):
        np.testing.assert_allclose(
            [r[key] for r in mirrored], [r[key] for r in one], rtol=1e-4, atol=1e-5, err_msg=key
        )
    losses = [r["train_loss"] for r in one]
    assert len(set(losses)) == len(losses)  # the weights moved: the comparison means something
    # The NaN guard's decision is all-reduced: a NaN on one replica skips the step on both.
    assert runs["nan"] == {"in_a_row": 1, "iterations": 0, "unchanged": True}
