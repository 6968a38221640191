"""``optimizer_fn(params, total_steps) -> keras optimizer``, schedules included."""

import keras


def learning_rate_fn(params, total_steps):
    """A constant rate, or cosine decay, each with an optional linear warm-up."""
    warmup_steps = 0
    if params.warmup_epochs and params.train_steps == 0:
        warmup_steps = int(params.warmup_epochs * total_steps / max(params.train_epochs, 1e-9))
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else params.learning_rate,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=params.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    return params.learning_rate


def optimizer_fn(params, total_steps):
    return keras.optimizers.Adam(
        learning_rate=learning_rate_fn(params, total_steps),
        beta_1=params.adam_beta1,
        beta_2=params.adam_beta2,
        epsilon=params.adam_epsilon,
    )
