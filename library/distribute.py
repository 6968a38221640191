"""Distribution: the strategy of a run, and datasets handed to its replicas.

Everything that holds variables (model, optimizer, metrics, step state) is created under
``strategy.scope()``; steps run through ``strategy.run``. With the default strategy (one CPU,
no GPU) all of this is a plain call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import tensorflow as tf


def create_strategy(params: Mapping | None = None) -> tf.distribute.Strategy:
    """Mirrored over all GPUs when there are several, one GPU when there is one, else the
    default strategy (the CPU)."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def call_input_fn(input_fn: Callable, input_context=None) -> tf.data.Dataset:
    """Calls an Estimator input function with the input context when it takes one."""
    if inspect.signature(input_fn).parameters:
        return input_fn(input_context)
    return input_fn()


def without_strings(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Drops string features (file names): no step uses them, and neither GPUs nor XLA
    take strings."""
    spec = dataset.element_spec
    features_spec = spec[0] if isinstance(spec, tuple) else spec
    if not isinstance(features_spec, Mapping):
        return dataset
    keep = [k for k, s in features_spec.items() if s.dtype != tf.string]
    if len(keep) == len(features_spec):
        return dataset
    if isinstance(spec, tuple):
        return dataset.map(lambda features, *rest: ({k: features[k] for k in keep}, *rest))
    return dataset.map(lambda features: {k: features[k] for k in keep})


def distribute_dataset(strategy: tf.distribute.Strategy, input_fn: Callable):
    """The dataset of ``input_fn``, one pipeline per worker, batches sent to the replicas'
    devices (prefetched there)."""

    def dataset_fn(input_context):
        return without_strings(call_input_fn(input_fn, input_context))

    return strategy.distribute_datasets_from_function(dataset_fn)


def first_replica(strategy: tf.distribute.Strategy, value):
    """The first replica's part of a per-replica value (e.g. for a picture of the input)."""
    return strategy.experimental_local_results(value)[0]
