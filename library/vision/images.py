"""Decoding and augmenting images inside tf.data: crops decoded only inside their window,
flips, and the boxes and masks that follow them.

Every random op is stateless (``seed``, shape [2]): the pipeline holds no random state, so
its position can be saved in a checkpoint. The crop and the flip say what they did (the
window, whether it flipped), so that boxes (``boxes_in_window``, ``flip_boxes``) and masks
(``crop_to_window``, ``flip_if``) follow the image. Images decode to 3 channels (RGB) or 1
(a mask, a grey image): ``channels``. A mask is resized by its nearest pixel
(``resize_mask``): interpolating class ids would invent classes along every edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def decode_and_random_crop(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    min_area: float = 0.25,
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    keep: tf.Tensor | None = None,
    channels: int = 3,
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random window of an encoded image: ``(uint8 [h, w, channels], window)``, ``window``
    being ``[ymin, xmin, ymax, xmax]`` of the crop in the whole image, as fractions (what
    ``boxes_in_window`` and ``crop_to_window`` take).

    With ``keep`` (a box ``[ymin, xmin, ymax, xmax]`` in fractions), the window holds that
    box whole (an object that must stay in the picture). JPEGs are decoded only inside the
    window (``decode_and_crop_jpeg``); other formats are decoded whole, then cropped.
    """
    if keep is None:
        boxes, covered = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), min_area
    else:
        boxes, covered = tf.reshape(tf.cast(keep, tf.float32), [1, 1, 4]), 1.0

    def window(shape):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([shape[0], shape[1], 3]),
            bounding_boxes=boxes,
            seed=seed,
            min_object_covered=covered,
            aspect_ratio_range=aspect_ratio_range,
            area_range=(min_area, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin[0], begin[1], size[0], size[1]

    return _decode_window(encoded, window, channels)


def decode_and_central_crop(
    encoded: tf.Tensor, fraction: float = 0.875, channels: int = 3
) -> tf.Tensor:
    """The central square of an encoded image (side: ``fraction`` of the shorter edge), uint8
    ``[side, side, channels]``. A mask of the image's size cropped so lies over it."""

    def window(shape):
        height, width = shape[0], shape[1]
        side = tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
        return (height - side) // 2, (width - side) // 2, side, side

    image, _ = _decode_window(encoded, window, channels)
    return image


def decode(encoded: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """A whole encoded image (JPEG, PNG, GIF, BMP) as uint8 ``[h, w, channels]``."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def _decode_window(encoded: tf.Tensor, window, channels: int = 3) -> tuple[tf.Tensor, tf.Tensor]:
    def fractions(shape, top, left, h, w):
        height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
        box = tf.cast(tf.stack([top, left, top + h, left + w]), tf.float32)
        return box / tf.stack([height, width, height, width])

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        top, left, h, w = window(shape)
        crop = tf.stack([top, left, h, w])
        image = tf.image.decode_and_crop_jpeg(encoded, crop, channels=channels)
        return image, fractions(shape, top, left, h, w)

    def other():
        image = decode(encoded, channels)
        shape = tf.shape(image)
        top, left, h, w = window(shape)
        cropped = tf.image.crop_to_bounding_box(image, top, left, h, w)
        return cropped, fractions(shape, top, left, h, w)

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def crop_to_window(image: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """The part of a decoded image ``[h, w, c]`` inside ``window`` (``[ymin, xmin, ymax,
    xmax]``, fractions, as ``decode_and_random_crop`` returns it): the same pixels of a mask
    of the image's size as the crop took of the image (a mask of another size: the same
    part, to the nearest pixel)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.concat([shape, shape], axis=0)
    # Rounded, not floored: the window's fractions are pixel counts divided by the size in
    # float32, and may come back a hair under the whole pixel.
    top, left, bottom, right = tf.unstack(tf.cast(tf.round(window * scale), tf.int32))
    return tf.image.crop_to_bounding_box(image, top, left, bottom - top, right - left)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(image, flipped)``: the image flipped left-right with probability 1/2, and whether
    it was (for ``flip_boxes`` and ``flip_if``)."""
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)  # independent of the crop
    flipped = tf.random.stateless_uniform([], flip_seed) < 0.5
    return flip_if(image, flipped), flipped


def flip_if(image: tf.Tensor, flipped: tf.Tensor) -> tf.Tensor:
    """An image (a mask) flipped left-right when ``flipped``: what ``random_flip`` did to the
    image it goes with."""
    return tf.cond(flipped, lambda: tf.image.flip_left_right(image), lambda: image)


def resize_mask(mask: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """A mask (``[h, w, 1]`` or a batch of them) resized to ``size`` by its nearest pixel, its
    dtype kept: an anti-aliased or bilinear resize would blend class ids into values that
    are no class."""
    return tf.cast(tf.image.resize(mask, size, method="nearest"), mask.dtype)


def boxes_in_window(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Boxes ``[..., 4]`` (``[ymin, xmin, ymax, xmax]``, fractions of the whole image) as
    fractions of the crop ``window``, clipped to it."""
    ymin, xmin, ymax, xmax = tf.unstack(window)
    origin = tf.stack([ymin, xmin, ymin, xmin])
    scale = tf.stack([ymax - ymin, xmax - xmin, ymax - ymin, xmax - xmin])
    return tf.clip_by_value((tf.cast(boxes, tf.float32) - origin) / scale, 0.0, 1.0)


def flip_boxes(boxes: tf.Tensor, flipped: tf.Tensor) -> tf.Tensor:
    """Boxes of an image flipped left-right when ``flipped``."""
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    mirrored = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
    return tf.where(flipped, mirrored, tf.cast(boxes, tf.float32))


def map_images(
    fn,
    encoded: tf.Tensor,
    image_shape: Sequence[int],
    seed: tf.Tensor | None = None,
    output_signature=None,
    channels: int | None = None,
):
    """Applies ``fn(encoded_image)`` (or ``fn(encoded_image, seed)``) to each image of a batch
    (or ``fn(element)`` / ``fn(element, seed)`` to each element of a structure of batches:
    an image and its mask, say).

    With ``seed`` (shape [2]), each image gets its own seed split from it. Returns float32
    ``[batch, *image_shape]`` (``image_shape`` being ``[h, w, c]``, or ``[h, w]`` and
    ``channels``: 1 for a grey image), or ``output_signature``'s structure when given.
    """
    shape = list(image_shape) if channels is None else [*list(image_shape)[:2], channels]
    signature = output_signature or tf.TensorSpec(shape, tf.float32)
    if seed is None:
        return tf.map_fn(fn, encoded, fn_output_signature=signature, parallel_iterations=16)
    count = tf.shape(tf.nest.flatten(encoded)[0])[0]
    seeds = tf.random.experimental.stateless_split(seed, count)
    return tf.map_fn(
        lambda args: fn(*args),
        (encoded, seeds),
        fn_output_signature=signature,
        parallel_iterations=16,
    )
