"""The GAN's hyperparameters (no TensorFlow)."""

from library import Field

METRICS = ()

HYPERPARAMETERS = (
    Field("noise_dim", int, 16, "size of the generator's noise", interval="[1, inf)"),
    Field("width", int, 32, "filters of the first layers of both networks", interval="[1, inf)"),
    Field("learning_rate", float, 2e-4, "the generator's Adam rate", interval="(0, inf)"),
    Field(
        "discriminator_learning_rate",
        float,
        2e-4,
        "the discriminator's Adam rate",
        interval="(0, inf)",
    ),
    Field("adam_beta1", float, 0.5, "Adam beta_1 of both optimizers", interval="[0, 1)"),
)
