"""Distribution: the strategy of a run, and datasets handed to its replicas.

Everything that holds variables (model, optimizer, metrics, step state) is created under
``strategy.scope()``; steps run through ``strategy.run``. With the default strategy (one CPU,
no GPU) all of this is a plain call.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf

from library.base.errors import ProjectError, StrategyError
from library.contract import call_input_fn
from library.data import service as data_service


def create_strategy(params: Mapping | None = None) -> tf.distribute.Strategy:
    """The strategy ``params["distribution"]`` names (see the run option's help).

    ``auto``: mirrored over all GPUs when there are several, one GPU when there is one, else
    the default strategy (the CPU). ``multi_worker`` must be created before any other
    TensorFlow work in the process (TensorFlow's rule), which is why the Estimator creates it
    first.
    """
    params = params or {"distribution": "auto"}  # no configuration: the default choice
    choice = params["distribution"]
    if choice == "multi_worker":  # before listing devices, which starts the runtime
        return _multi_worker(params["collective_timeout_secs"])
    if choice == "tpu":  # a code path present and documented, not tested here (no TPU)
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=params["tpu_address"])
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if choice == "mirrored" or (choice == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()  # all GPUs, or the CPU
    if choice == "one_device" or gpus:
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def _multi_worker(timeout_secs: float) -> tf.distribute.Strategy:
    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not cluster.cluster_spec().as_dict():
        raise StrategyError(
            "distribution multi_worker needs TF_CONFIG (the cluster and this task) in the "
            "environment of each worker; see docs/scaling.md, 'Several hosts'"
        )
    # Without a timeout, the others wait forever on a worker that died.
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_secs)
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=cluster, communication_options=options
    )


def cpu_computes_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this machine's CPU has bfloat16 instructions (AVX512-BF16 or AMX); True when
    it cannot be told (not Linux). ``cpuinfo``: the text of /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as stream:
                cpuinfo = stream.read()
        except OSError:
            return True
    lines = re.findall(r"^flags\s*:(.*)$", cpuinfo, re.M)
    flags = set(lines[0].split()) if lines else set()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process in its cluster; ``(None, 0)`` alone."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs: alone, the chief, or worker 0 of a
    cluster without a chief (TensorFlow's convention)."""
    task_type, task_id = task(strategy)
    if task_type in (None, "chief"):
        return True
    jobs = strategy.cluster_resolver.cluster_spec().jobs
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


def lost_worker(error: tf.errors.OpError, params: Mapping) -> str:
    """One line for a collective that failed because a worker died or stopped answering."""
    # TensorFlow says it in several ways (other lines name this worker's devices too): the
    # unhealthy tasks one per line, or the remote target of a failed call.
    patterns = (
        r"^(/job:\w+/replica:\d+/task:\d+)\s*$",
        r"remote target (/job:\w+/replica:\d+/task:\d+)",
        r"Error reported from (/job:\w+/task:\d+)",
    )
    tasks: list[str] = []
    for pattern in patterns:
        tasks = tasks or sorted(set(re.findall(pattern, error.message, re.M)))
    who = f"{', '.join(tasks)} stopped answering" if tasks else "a worker stopped answering"
    if isinstance(error, tf.errors.DeadlineExceededError):
        who += f" (no reply in collective_timeout_secs {params['collective_timeout_secs']:g})"
    return (
        f"{who}; start every worker again with its command: they resume from the last "
        f"checkpoint in {params['model_dir']}"
    )


def agreed(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether ``flag`` holds on any worker (every worker gets the same answer); ``flag``
    itself in a process alone."""
    if task(strategy)[0] is None:
        return flag
    value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)) > 0


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Waits until every worker gets here: a worker that ends first would otherwise be
    reported as crashed by the others' coordination service while they finish."""
    if task(strategy)[0] is not None:
        strategy.reduce(
            tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None
        )


def worker_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where a worker that is not the chief writes what TensorFlow makes every worker write
    (its checkpoints, its summaries): a folder of its own, removed when it ends."""
    task_type, task_id = task(strategy)
    return os.path.join(model_dir, f".workertemp_{task_type}_{task_id}")


def model_features(dataset: tf.data.Dataset, names: Sequence[str] | None) -> tf.data.Dataset:
    """The dataset with only the features a dict-input model takes (``names``; None: all):
    the others (a file name, say) need not travel to the devices. Those it takes stay, of
    any dtype: strings reach a model that vectorizes text.

    Raises:
        ProjectError: the model takes a feature the input does not give.
    """
    spec = dataset.element_spec
    features_spec = spec[0] if isinstance(spec, tuple) else spec
    if names is None or not isinstance(features_spec, Mapping):
        return dataset
    missing = [name for name in names if name not in features_spec]
    if missing:
        raise ProjectError(
            f"the model takes the feature {missing[0]!r}, which input_fn does not give (it "
            f"gives {', '.join(map(repr, features_spec)) or 'none'}): name its inputs as "
            "the features are named"
        )
    if len(names) == len(features_spec):
        return dataset
    keep = [name for name in features_spec if name in names]
    if isinstance(spec, tuple):
        return dataset.map(lambda features, *rest: ({k: features[k] for k in keep}, *rest))
    return dataset.map(lambda features: {k: features[k] for k in keep})


def holds_strings(spec) -> bool:
    """Whether a dataset's element spec holds a string tensor anywhere."""
    return any(s.dtype == tf.string for s in tf.nest.flatten(spec) if hasattr(s, "dtype"))


def distribute_dataset(
    strategy: tf.distribute.Strategy,
    input_fn: Callable,
    service_address: str = "",
    features: Sequence[str] | None = None,
    deterministic: bool | None = None,
):
    """The dataset of ``input_fn``, one pipeline per worker, batches sent to the replicas'
    devices (prefetched there); run by the tf.data service at ``service_address`` if given
    (``library/data/service.py``). ``features``: the names of the features the model takes
    (``contract.model_feature_names``; None: all of them). ``deterministic``: the pipeline's
    option for its parallel reads and maps that do not say (None: tf.data's default, one
    order).

    Strings cannot live on an accelerator: where the replicas are GPUs or TPUs and a batch
    holds strings, batches stay on the host and each step copies what it needs.
    """

    def dataset_fn(input_context):
        dataset = model_features(call_input_fn(input_fn, input_context), features)
        if deterministic is not None:
            options = tf.data.Options()
            options.deterministic = deterministic
            dataset = dataset.with_options(options)
        if service_address:
            dataset = data_service.distribute(dataset, service_address)
        return dataset

    options = None
    if _accelerators(strategy) and holds_strings(dataset_fn(None).element_spec):
        options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
    return strategy.distribute_datasets_from_function(dataset_fn, options)


def _accelerators(strategy: tf.distribute.Strategy) -> bool:
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy, which create_strategy gives on CPUs alone
        return False
    return any(":GPU:" in device.upper() or ":TPU:" in device.upper() for device in devices)


def element_spec(strategy: tf.distribute.Strategy, dataset, input_fn: Callable):
    """The ``(features, labels)`` spec of one replica's batches of a distributed ``dataset``
    (built again from ``input_fn`` when several replicas make the spec per-replica)."""
    if strategy.num_replicas_in_sync == 1:
        return dataset.element_spec
    return call_input_fn(input_fn).element_spec  # all features: a superset is harmless


def first_replica(strategy: tf.distribute.Strategy, value):
    """The first replica's part of a per-replica value (e.g. for a picture of the input)."""
    return strategy.experimental_local_results(value)[0]
