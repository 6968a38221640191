"""TensorFlow Hub modules as Keras 3 layers, and encoders exported as such modules.

``hub.KerasLayer`` is a ``tf_keras`` (Keras 2) layer and fails inside a Keras 3 model
(tensorflow/hub#903); ``keras.layers.TFSMLayer`` never passes ``training`` to the module (its
batch norm never leaves inference mode) and drops its regularization losses. ``HubModule``
loads a module in the TF2 reusable-SavedModel format (``obj.__call__(inputs, training=...)``,
``obj.variables``, ``obj.trainable_variables``, ``obj.regularization_losses``: what tfhub.dev
and Kaggle Models image modules have) and adopts its variables as Keras variables wrapping the
same ``tf.Variable``s, so that the optimizer's updates reach the module's own functions and
checkpoints hold them.
"""

from __future__ import annotations

import contextlib
import difflib
import os

import keras
import tensorflow as tf

from library.base.errors import HubError, first_line
from library.base.files import move_tree, remove_tree, temporary_folder


def resolve_handle(handle: str) -> str:
    """A local folder as it is; anything else through ``tensorflow_hub`` (which downloads and
    caches it: the only place the scaffold may reach the network, and only when asked)."""
    if tf.io.gfile.isdir(handle):
        return handle
    if os.path.sep in handle and not handle.startswith(("http://", "https://")):
        raise HubError(f"module: no SavedModel folder at {handle}")
    import tensorflow_hub  # imports tf_keras: only for a remote handle

    try:
        return tensorflow_hub.resolve(handle)
    except Exception as error:  # any failure to fetch gets the same advice
        raise HubError(
            f"module {handle}: cannot be resolved ({type(error).__name__}: {error}); "
            "download it once and give its local folder"
        ) from None


def load_module(handle: str) -> tf.Module:
    """The restored module of ``handle``, checked for the reusable-SavedModel interface."""
    path = resolve_handle(handle)
    try:
        module = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        reason = first_line(error)
        raise HubError(f"module {handle}: not a loadable SavedModel ({reason})") from None
    missing = [a for a in ("__call__", "variables") if not hasattr(module, a)]
    if missing:
        raise HubError(
            f"module {handle}: not a reusable SavedModel (it has no {', '.join(missing)}); "
            "export a TF2 module with __call__(inputs, training) and variables"
        )
    return module


class HubModule(keras.layers.Layer):
    """A reusable SavedModel as a Keras 3 layer.

    Args:
        handle: a local SavedModel folder or a hub handle.
        trainable: fine-tune the module (its trainable variables train, its batch norm runs
            in training mode and its regularization losses join the loss); False freezes all
            of it, statistics included.
        name: the layer's name, the first part of its variables' names.
    """

    def __init__(self, handle: str, trainable: bool = True, name: str = "hub", **kwargs):
        super().__init__(trainable=trainable, name=name, **kwargs)
        self.handle = handle
        self.module = load_module(handle)
        trainable_refs = {v.ref() for v in getattr(self.module, "trainable_variables", ())}
        self.adopted = []
        for variable in self.module.variables:
            # Named as in the module, under this layer: "hub/conv2d/kernel".
            *scopes, name = variable.name.split(":")[0].split("/")
            with contextlib.ExitStack() as stack:
                for scope in (self.name, *scopes):
                    stack.enter_context(keras.name_scope(scope))
                adopted = keras.Variable(
                    initializer=variable,
                    trainable=trainable and variable.ref() in trainable_refs,
                    dtype=variable.dtype,
                    shape=variable.shape,
                    name=name,
                )
            self._track_variable(adopted)
            self.adopted.append(adopted)
        self.built = True

    def call(self, images, training=False):
        fine_tuning = bool(training) and self.trainable
        outputs = self.module(images, training=fine_tuning)
        if fine_tuning:
            for loss in getattr(self.module, "regularization_losses", ()):
                self.add_loss(loss())
        return outputs

    def compute_output_spec(self, images, training=False):
        spec = tf.TensorSpec([1, *images.shape[1:]], images.dtype)
        try:
            concrete = self.module.__call__.get_concrete_function(spec, training=False)
        except (TypeError, ValueError) as error:
            reason = first_line(error)
            raise HubError(
                f"module {self.handle}: the module does not take images of shape "
                f"{list(images.shape[1:])} with training=False ({reason}); check the size the "
                "model gives it"
            ) from None
        shape = concrete.output_shapes
        return keras.KerasTensor((images.shape[0], *shape[1:]), dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "handle": self.handle}


def export_module(encoder: keras.Model, directory: str) -> str:
    """Writes ``encoder`` as a reusable SavedModel that ``HubModule`` (and TF Hub) loads.

    The module's ``__call__(images, training=False)`` takes float images as the encoder does;
    ``variables``, ``trainable_variables`` and ``regularization_losses`` are saved with it.
    Written through a temporary folder, so ``directory`` is whole or absent.
    """
    if tf.io.gfile.exists(directory) and not tf.io.gfile.exists(
        os.path.join(directory, "saved_model.pb")
    ):
        raise HubError(f"{directory} exists and is not a SavedModel: choose another folder")
    spec = tf.TensorSpec([None, *encoder.input_shape[1:]], tf.float32)
    root = tf.train.Checkpoint()
    root.encoder = encoder

    @tf.function
    def call(images, training=False):
        return encoder(images, training=training)

    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    root.__call__ = call
    root.variables = list(encoder.variables)
    root.trainable_variables = list(encoder.trainable_variables)
    if encoder.losses:
        root.regularization_losses = [
            tf.function(lambda: tf.add_n(encoder.losses), input_signature=[])
        ]
    else:
        root.regularization_losses = []
    temporary = temporary_folder(directory)
    try:
        tf.saved_model.save(root, temporary)
    except BaseException:
        if tf.io.gfile.exists(temporary):
            remove_tree(temporary)
        raise
    if tf.io.gfile.exists(directory):  # an earlier export of it: replaced whole
        remove_tree(directory)
    move_tree(temporary, directory)
    return directory


def encoder_of(model: keras.Model, layer_name: str = "") -> keras.Model:
    """The part of ``model`` from its input to ``layer_name``'s output (default: the input of
    the last layer, i.e. what a one-layer head receives)."""
    if layer_name:
        try:
            output = model.get_layer(layer_name).output
        except ValueError:
            close = difflib.get_close_matches(layer_name, [x.name for x in model.layers], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HubError(
                f"encoder_layer {layer_name!r} is not a layer of the model{hint}"
            ) from None
    else:
        output = model.layers[-1].input
    if len(model.inputs) != 1:
        raise HubError("export_encoder needs a model with one input")
    return keras.Model(model.inputs[0], output, name="encoder")
