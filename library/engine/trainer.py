"""What training holds: the model, the update (its optimizers, and a project's own models),
the step state and the moving average, created under the strategy, restored from
``model_dir``, with the compiled train loop and the input iterator."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import keras
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # op determinism, either way

from library.base.errors import ProjectError, first_line
from library.config import Params
from library.contract import Functions, call_input_fn, model_feature_names
from library.engine import batch_norm, distribute, steps
from library.engine.run_state import RunState
from library.engine.schedule import Plan
from library.engine.stall import StallWatch
from library.engine.update import DefaultStep, TrainingStep
from library.monitor import bottleneck
from library.monitor.goodput import Goodput
from library.outputs import checkpoints, decided
from library.outputs import run_state as run_state_file
from library.transfer import names, warm_start


@dataclass
class Trainer:
    """The training state of one run; ``train(n)`` runs ``n`` steps."""

    strategy: tf.distribute.Strategy
    model: keras.Model  # the model trained (model_fn's)
    update: TrainingStep  # the update, holding every optimizer
    state: steps.StepState
    plan: Plan
    manager: tf.train.CheckpointManager
    train_loop: Callable
    iterator: object
    restored: str | None  # the checkpoint this run resumed from
    saved_step: int = -1  # the step of the newest checkpoint this run saved (or resumed from)
    last_saved: str | None = None
    refresh_statistics: Callable[[], None] | None = None  # batch norm, before each save
    stall_watch: contextlib.AbstractContextManager | None = None  # tf.data service input
    measure_input: Callable[[], object] | None = None  # -> bottleneck.Verdict
    run_state: RunState = field(default_factory=RunState)  # saved beside each checkpoint
    goodput: Goodput | None = None  # where the wall time goes
    # (train loss, loss terms, learning rate) of the period the restored checkpoint ended
    restored_record: tuple = (None, {}, 0.0)
    averaged: keras.Model | None = None  # the moving average of the weights (ema_decay)

    @property
    def evaluated(self) -> keras.Model:
        """The model evaluation, the best checkpoint and the export see: the moving average
        of the weights when there is one, else the trained model."""
        return self.averaged if self.averaged is not None else self.model

    @property
    def step(self) -> int:
        return int(self.state.step.numpy())

    def train(self, num_steps: int) -> int:
        """Runs ``num_steps`` steps; returns the count of non-finite steps in a row."""
        started = time.perf_counter()
        with self.stall_watch or contextlib.nullcontext():
            in_a_row = int(self.train_loop(self.iterator, tf.constant(num_steps, tf.int64)))
        if self.goodput is not None:
            self.goodput.trained(num_steps, time.perf_counter() - started)
            self.goodput.beat(self.step, every_secs=1.0)  # how far a kill will have lost
        return in_a_row

    def save(self) -> str:
        """Saves a checkpoint at the current step; returns its prefix.

        Batch-norm statistics are re-estimated with the weights being saved first (when
        ``batch_norm_refresh_batches`` > 0), so that every checkpoint evaluates as it trained.
        """
        started = time.perf_counter()
        if self.refresh_statistics is not None:
            self.refresh_statistics()
        try:
            self.last_saved = self.manager.save(checkpoint_number=self.step)
        except tf.errors.FailedPreconditionError as error:  # an iterator TF cannot serialize
            reason = first_line(error)
            raise checkpoints.CheckpointError(
                f"checkpoint_input_pipeline: this input pipeline cannot be saved ({reason}); "
                "set checkpoint_input_pipeline: false or make the pipeline stateless"
            ) from None
        self.saved_step = self.step
        self.run_state.saved_with(self.last_saved)
        run_state_file.remove_orphans(self.manager.directory)  # of the checkpoints deleted
        if self.goodput is not None:
            self.goodput.add("checkpoints", time.perf_counter() - started)
        return self.last_saved


def create_trainer(
    functions: Functions,
    params: Params,
    plan: Plan,
    input_fn: Callable,
    strategy: tf.distribute.Strategy,
    say: Callable[[str], None] = print,
    restore_dir: str | None = None,
    data_decided: Mapping[str, object] | None = None,
) -> Trainer:
    """Builds (or restores from ``params.model_dir``) everything a training run holds.

    Longer than most: it is the one place that says in which order a run is assembled
    (what is restored depends on what was, the optimizer on the restored plan); each part
    is a helper below.

    Args:
        functions: the project's functions.
        params: the resolved configuration.
        plan: the run's durations; its ``schedule_steps`` is replaced by the one recorded in
            the checkpoint when the run resumes.
        input_fn: the training input function (of an optional input context).
        strategy: the distribution strategy; variables are created under its scope.
        say: where one-line messages go.
        restore_dir: where to resume from when it is not ``params.model_dir`` (a worker
            that is not the chief resumes from the chief's checkpoints, read only, and saves
            into a folder of its own).
        data_decided: what the data decided (``library/outputs/decided.py``), saved in
            every checkpoint.

    Raises:
        checkpoints.CheckpointError: checkpoints exist and none restores.
    """
    _prepare_process(params, say)
    model, step, dataset, spec = _model_and_input(functions, params, input_fn, strategy)
    terms = step.logged_names(spec)  # traced outside the scope: a cross-replica context
    with strategy.scope():  # would refuse a step's tf.nn.compute_average_loss
        state = steps.StepState(terms)
        # The moving average: a second copy, float32 (evaluated and exported, never trained).
        averaged = functions.model_fn(params) if params.ema_decay else None
    weights = {"model": model} if averaged is None else {"trained_model": model, "model": averaged}
    source = restore_dir or params.model_dir
    _check_average(tf.train.latest_checkpoint(source), averaged is not None)
    restored = checkpoints.restore_latest(
        tf.train.Checkpoint(**weights, state=state),
        source,
        say,
        read_only=source != params.model_dir,
    )
    restored_record = state.recorded() if restored else (None, {}, 0.0)
    if restored:  # the sums of the period that ended there: the next one starts afresh
        state.reset_checkpoint_loss()
        kept = int(state.schedule_steps.numpy())  # the schedule's length the run began with
        plan = plan.replace(schedule_steps=kept or plan.schedule_steps)
    _warm_start(model, params, restored, say)
    if averaged is not None and not restored:  # the average starts from the weights
        for target, value in zip(averaged.weights, model.weights, strict=True):
            target.assign(value)
    state.schedule_steps.assign(plan.schedule_steps)
    updaters = _optimizers(step, params, plan, strategy)
    iterator = iter(dataset)
    refresh_statistics = _statistics_refresher(  # of what is evaluated, before each save
        strategy,
        model if averaged is None else averaged,
        input_fn,
        params.batch_norm_refresh_batches,
        model_feature_names(model),
        params.deterministic,
    )
    saved = _checkpointed(weights, step, updaters, state, data_decided)
    if params.checkpoint_input_pipeline or params.deterministic:  # exact: where the data is
        saved["iterator"] = iterator
        if refresh_statistics is not None:  # its batches too
            saved["statistics_iterator"] = refresh_statistics.iterator
    if restored:  # the rest of the checkpoint (the model and step state are restored)
        _restore_the_rest(saved, step, model, restored, say)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(**saved),
        params.model_dir,
        max_to_keep=params.keep_checkpoints,
        step_counter=state.step,
    )
    train_loop = _train_loop(step, updaters, params, strategy, state, model, averaged, say)
    trainer = Trainer(strategy, model, step, state, plan, manager, train_loop, iterator, restored)
    trainer.refresh_statistics, trainer.averaged = refresh_statistics, averaged
    _watch(trainer, input_fn, params)
    if restored:
        trainer.saved_step, trainer.last_saved = trainer.step, restored
        trainer.restored_record = restored_record
        trainer.run_state = RunState(run_state_file.read(restored))
        trainer.run_state.prefix = restored if source == params.model_dir else None
    trainer.run_state.terms = list(terms)
    return trainer


def _model_and_input(functions, params, input_fn, strategy) -> tuple:
    """``(model, the update built on it, the distributed training dataset, one replica's
    element spec)``. The default update gets the features the model takes; a project's own
    gets them all (a GAN's discriminator reads the real images its generator does not)."""
    with strategy.scope(), precision(params.mixed_precision):
        model = functions.model_fn(params)
        step = _training_step(functions, params)
        step.build(model, params)
    features = model_feature_names(model) if isinstance(step, DefaultStep) else None
    dataset = distribute.distribute_dataset(
        strategy, input_fn, params.data_service_address, features, params.deterministic
    )
    spec = distribute.element_spec(strategy, dataset, input_fn)
    if params.xla:
        steps.check_compilable(spec, features)
    return model, step, dataset, spec


def _training_step(functions: Functions, params: Params) -> TrainingStep:
    """The project's own update (``train_step_fn``), else the default one."""
    own = functions.train_step_fn(params) if functions.train_step_fn else None
    if own is not None:
        if not isinstance(own, TrainingStep):
            raise ProjectError(
                f"train_step_fn returned a {type(own).__name__}, not a library.TrainingStep "
                "(or None for the default update)"
            )
        return own
    if functions.optimizer_fn is None:
        raise ProjectError(
            "the project declares no optimizer_fn: declare one (the default update trains "
            "loss_fn with it), or a train_step_fn with optimizers of its own"
        )
    return DefaultStep(functions.loss_fn, functions.optimizer_fn)


def _check_average(prefix: str | None, averaging: bool) -> None:
    """Refuses to resume a run with the moving average switched on or off since its last
    checkpoint: it would resume from the average, or find no trained weights."""
    if prefix is None:
        return
    try:
        keys = checkpoints.root_keys(prefix)
    except (tf.errors.OpError, IndexError, ValueError):  # unreadable: restoring says which
        return
    if averaging == ("trained_model" in keys):
        return
    was = "without" if averaging else "with"
    raise checkpoints.CheckpointError(
        f"ema_decay: {prefix} was trained {was} a moving average of the weights; resume with "
        "the ema_decay it had (0: none), or train into a new model_dir with warm_start_from"
    )


def _prepare_process(params: Params, say: Callable[[str], None]) -> None:
    """Seeds, and what holds for the whole process: op determinism, a note on bfloat16."""
    keras.utils.set_random_seed(params.random_seed)
    emulated = not _accelerators() and not distribute.cpu_computes_bfloat16()
    if params.mixed_precision == "mixed_bfloat16" and emulated:
        say(
            "note: mixed_bfloat16 on this CPU, which has no bfloat16 instructions "
            "(AVX512-BF16 or AMX), is emulated and slower than float32: mixed_precision "
            "none is faster here"
        )
    if params.deterministic:  # for the whole process: no op may choose its order
        tf.config.experimental.enable_op_determinism()
    elif tf_config.is_op_determinism_enabled():  # an earlier run of this process (a notebook,
        tf_config.disable_op_determinism()  # a test) turned it on: this one times its input


def _warm_start(model: keras.Model, params: Params, restored: str | None, say) -> None:
    """Restore once, then resume: a warm start only for a run with no checkpoint."""
    if params.warm_start_from and restored:
        say(f"warm_start_from ignored: {params.model_dir} has a checkpoint to resume from")
    elif params.warm_start_from:
        warm_start.warm_start(
            model, params.warm_start_from, params.warm_start_vars, params.warm_start_name_map, say
        )


def _optimizers(step: TrainingStep, params: Params, plan: Plan, strategy) -> dict:
    """The step's optimizers (kept in ``step.optimizers``, saved with it), each built on its
    variables, and what applies each update: the optimizer, or under mixed_float16 its loss
    scale. The default update's optimizer is built on every trainable variable, frozen ones
    too: its slots are saved by position, so a resume with another lr_mult restores each
    slot into its own variable."""
    with strategy.scope():
        step.optimizers = dict(step.create_optimizers(params, plan))
        variables = step.variables()
        updaters = {}
        for name, optimizer in step.optimizers.items():
            updater = optimizer
            if params.mixed_precision == "mixed_float16":
                updater = keras.optimizers.LossScaleOptimizer(optimizer)
            updater.build(list(variables[name]))
            updaters[name] = updater
    return updaters


def _checkpointed(weights: dict, step: TrainingStep, updaters: dict, state, data_decided) -> dict:
    """What each checkpoint holds: the models (``model``: what is evaluated and exported),
    the optimizers (and apart, the loss scales: checkpoints restore across precisions), the
    step state, the layers' random state and what the data decided. The default update
    keeps the keys it always had (``optimizer``, ``loss_scale``); a project's own is saved
    whole (``step``: its models and optimizers)."""
    models = _step_models(step, weights)
    saved = {**weights, "state": state, "seeds": [v for m in models for v in seed_states(m)]}
    scales = {n: u for n, u in updaters.items() if u is not step.optimizers[n]}
    if isinstance(step, DefaultStep):
        saved["optimizer"] = step.optimizers["model"]
        if scales:
            saved["loss_scale"] = scales["model"]
    else:
        saved["step"] = step
        if scales:
            saved["loss_scales"] = scales
    saved[decided.KEY] = decided.variable(data_decided or {})
    return saved


def _step_models(step: TrainingStep, weights: dict) -> list[keras.Model]:
    """The models that train: the model first, then the step's others."""
    model = weights.get("trained_model", weights["model"])
    return [model, *(m for m in step.models() if m is not model)]


def _restore_the_rest(saved: dict, step: TrainingStep, model, prefix: str, say) -> None:
    """The optimizers (they must restore: what trains must not have changed), then what a
    checkpoint of an older version may not hold: the layers' random state, the loss scale,
    the input position, each said when it starts afresh."""
    if isinstance(step, DefaultStep):
        _check_same_trainables(model, prefix)
        checkpoints.restore_from(tf.train.Checkpoint(optimizer=saved["optimizer"]), prefix)
    else:
        checkpoints.restore_from(tf.train.Checkpoint(step=saved["step"]), prefix)
    _restore_optional({"seeds": saved["seeds"]}, prefix, "random state of the layers", say)
    for key in ("loss_scale", "loss_scales"):
        if key in saved:
            _restore_optional({key: saved[key]}, prefix, "loss scale", say)
    iterators = {k: v for k, v in saved.items() if k.endswith("iterator")}
    if iterators and _restore_optional(iterators, prefix, "input position", say):
        say("the input pipeline resumes at its saved position")


def _train_loop(step, updaters, params, strategy, state, model, averaged, say):
    """The compiled loop of train steps (``library/engine/steps.py``)."""
    variables = {name: list(v) for name, v in step.variables().items()}
    scales = None
    if isinstance(step, DefaultStep):  # lr_mult: per-variable factors, frozen ones left out
        variables["model"], model_scales = warm_start.update_scales(step.model, params.lr_mult, say)
        scales = {"model": model_scales}
    train_step = steps.build_train_step(
        step,
        updaters,
        variables,
        state,
        scales,
        scale_updates=params.plateau_patience > 0,  # a plateau lowers lr_multiplier
        averaged=None if averaged is None else (averaged, model, params.ema_decay),
    )
    return steps.build_train_loop(
        strategy,
        train_step,
        state,
        params.xla,
        time_input=not params.deterministic,
        accumulate=params.accumulate_batches,
    )


def _watch(trainer: Trainer, input_fn: Callable, params: Params) -> None:
    """The input check, once a run (measured alone it must be), and the watchdog of a
    trainer fed by the tf.data service."""
    alone = trainer.strategy.num_replicas_in_sync == 1 and not params.data_service_address
    if params.input_check and alone:
        model, step = trainer.model, trainer.update
        trainer.measure_input = lambda: measure_input(input_fn, model, step, params)
    if params.data_service_address:
        address, timeout = params.data_service_address, params.data_service_timeout_secs

        def stalled() -> str:
            where = (
                f"it resumes from step {trainer.saved_step} ({trainer.last_saved})"
                if trainer.last_saved
                else "it starts again (no checkpoint was saved yet)"
            )
            return (
                f"no training batch from the tf.data service at {address} for {timeout:g} s "
                "(data_service_timeout_secs): its workers are gone or stalled; start a worker "
                f"and run the same command: {where}"
            )

        trainer.stall_watch = StallWatch(lambda: trainer.step, timeout, stalled)


def _accelerators() -> bool:
    """Whether this machine has GPUs or TPUs (where bfloat16 is native)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def measure_input(input_fn: Callable, model: keras.Model, step: TrainingStep, params: Params):
    """The input check (``library.monitor.bottleneck``) of a fresh copy of the training
    pipeline, with the options training gives it, against the step's own passes; the
    models' state (batch norm's statistics, dropout's random state) put back after."""
    options = tf.data.Options()
    options.deterministic = params.deterministic
    raw = call_input_fn(input_fn).with_options(options)
    names = model_feature_names(model) if isinstance(step, DefaultStep) else None
    kept = [v for m in [model, *step.models()] for v in m.non_trainable_variables]
    state = [tf.identity(v) for v in kept]
    try:
        return bottleneck.measure(
            raw,
            lambda dataset: distribute.model_features(dataset, names),
            steps.gradient_pass(step, params),
        )
    finally:
        steps.restore(kept, state)


def seed_states(model: keras.Model) -> list:
    """The states of the model's random-number generators (a dropout layer's), which
    TensorFlow's checkpoint of the model does not hold: saved beside it, so that a resumed
    run draws what the uninterrupted one draws."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _restore_optional(objects: dict, prefix: str, what: str, say) -> bool:
    """Restores ``objects`` (``what`` they are) from ``prefix`` when it holds them (a
    checkpoint of an older version may not): says so otherwise."""
    try:
        checkpoints.restore_from(tf.train.Checkpoint(**objects), prefix)
        return True
    except (AssertionError, ValueError, tf.errors.OpError):
        say(f"{prefix} holds no {what}: the {what} starts afresh")
        return False


@contextlib.contextmanager
def precision(mixed_precision: str):
    """Layers built inside compute in ``mixed_precision`` (``none``: float32); variables stay
    float32. Only while building: evaluation and export models built later are float32."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32" if mixed_precision == "none" else mixed_precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _check_same_trainables(model: keras.Model, prefix: str) -> None:
    """Refuses a resume whose trainable variables differ from the checkpoint's (fine_tuning
    changed, say): the optimizer's slots would land in the wrong variables."""
    saved = names.optimizer_variable_names(prefix)
    current = names.tensorflow_names(model.trainable_variables)
    if saved is not None and saved != current:
        changed = sorted(set(saved) ^ set(current))
        raise checkpoints.CheckpointError(
            f"{prefix} trained {len(saved)} variables, this model has {len(current)} trainable "
            f"({', '.join(changed[:3]) or 'in another order'}...): what trains changed (a part "
            "frozen or unfrozen, another model); train into a new model_dir, with "
            "warm_start_from to start from this one"
        )


class _StatisticsRefresher:
    """Re-estimates batch-norm statistics from ``batches`` training batches of an input
    pipeline of its own."""

    def __init__(self, refresh: Callable, iterator, batches: int):
        self.refresh, self.iterator, self.batches = refresh, iterator, batches

    def __call__(self) -> None:
        self.refresh(self.iterator, tf.constant(self.batches, tf.int64))


def _statistics_refresher(
    strategy, model, input_fn, batches: int, features, deterministic: bool
) -> _StatisticsRefresher | None:
    refresh = batch_norm.build_refresh(strategy, model) if batches else None
    if refresh is None:
        return None
    dataset = distribute.distribute_dataset(
        strategy, input_fn, features=features, deterministic=deterministic
    )
    iterator = iter(dataset)
    return _StatisticsRefresher(refresh, iterator, batches)
