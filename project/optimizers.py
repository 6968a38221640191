"""``optimizer_fn(params, plan) -> keras optimizer``, learning-rate schedules included.

Every schedule is a function of the step alone (``plan.schedule_steps`` is kept across
resumes), so a resumed run continues the same rates.
"""

import keras
from keras import ops


class LinearWarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule(step)`` scaled by a ramp from 1/warmup_steps up to 1 over ``warmup_steps``.

    The schedule underneath keeps its own clock: warm-up only scales its first steps.
    """

    def __init__(self, schedule, warmup_steps: int):
        self.schedule = schedule
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        rate = self.schedule(step) if callable(self.schedule) else self.schedule
        ramp = ops.minimum(1.0, (ops.cast(step, "float32") + 1.0) / max(1, self.warmup_steps))
        return ops.cast(rate, "float32") * ramp

    def get_config(self):
        return {"schedule": self.schedule, "warmup_steps": self.warmup_steps}


def learning_rate_fn(params, plan):
    """The rate of ``lr_schedule``, with a linear warm-up of ``warmup_epochs`` when positive.

    constant: ``learning_rate``; cosine: decays to 0 over the schedule's length; exponential:
    times ``lr_decay_rate`` per epoch; piecewise: ``lr_values[i]`` from epoch
    ``lr_boundaries[i - 1]`` on (the first value before the first boundary).
    """
    if params.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            params.learning_rate, decay_steps=max(1, plan.schedule_steps)
        )
    elif params.lr_schedule == "exponential":
        rate = keras.optimizers.schedules.ExponentialDecay(
            # plan.steps: in a run whose epochs are not counted, one line (a PlanError)
            params.learning_rate,
            decay_steps=plan.steps(1.0),
            decay_rate=params.lr_decay_rate,
        )
    elif params.lr_schedule == "piecewise":
        # Keras keeps values[i] while step <= boundaries[i]: the step that starts epoch e is
        # steps(e), so the boundary is the step before it.
        rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [plan.steps(epochs) - 1 for epochs in params.lr_boundaries], list(params.lr_values)
        )
    else:
        rate = params.learning_rate
    warmup_steps = plan.steps(params.warmup_epochs)
    return LinearWarmUp(rate, warmup_steps) if warmup_steps else rate


def optimizer_fn(params, plan):
    return keras.optimizers.Adam(
        learning_rate=learning_rate_fn(params, plan),
        beta_1=params.adam_beta1,
        beta_2=params.adam_beta2,
        epsilon=params.adam_epsilon,
        # Decoupled from the loss (AdamW), unlike l2_regularization; None skips its ops.
        weight_decay=params.weight_decay or None,
    )
