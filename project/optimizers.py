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
    """The rate of ``lr_schedule`` (constant or cosine decay), with a linear warm-up of
    ``warmup_epochs`` when it is positive."""
    if params.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            params.learning_rate, decay_steps=max(1, plan.schedule_steps)
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
    )
