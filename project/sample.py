"""``sample_fn``: a few examples of this project's data, made on the spot, for its tests
(``tests/project`` trains, evaluates, exports and predicts on them)."""

import os

from library import encoder_of, export_module
from library.vision import sample

from . import model


def sample_fn(folder, params):
    """Striped images of two classes as records (the image kit's converter) and a folder of
    them to predict; a pretrained module for the sets that fine-tune one (the small encoder,
    exported as ``--mode export_encoder`` would); at 16 px."""
    keys = {**sample.write_sample(folder), "image_size": 16}
    small = params.replace(encoder="small_cnn", num_classes=2, **keys)
    encoder = encoder_of(model.model_fn(small), params.encoder_layer)
    keys["hub_handle"] = export_module(encoder, os.path.join(folder, "module"))
    return keys
