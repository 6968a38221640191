"""Input (image and mask, cropped and flipped alike), model (an encoder-decoder giving a logit
per pixel), loss terms, metrics (mean IoU), predictions (the mask as a PNG) and serving."""

import keras
import tensorflow as tf

from library import CSVLogger, ModeKeys, random_seeds, read_records, replica_batch_size
from library.vision import images, records
from library.vision.figures import ImageSummaries, MaskFigures


def decode_pair(image, mask, params, seed=None):
    """An encoded image and its encoded mask as float32 ``[size, size, 3]`` in [0, 1] and
    int32 ``[size, size, 1]`` (1: the digit). With ``seed``: a random crop and a random flip,
    the mask cut by the crop's window and flipped by its flag, so that it stays on the
    image."""
    size = [params.image_size, params.image_size]
    if seed is None:
        picture, truth = images.decode(image, channels=3), images.decode(mask, channels=1)
    else:
        picture, window = images.decode_and_random_crop(image, seed, params.crop_min_area)
        truth = images.crop_to_window(images.decode(mask, channels=1), window)
        if params.augment_flip:
            picture, flipped = images.random_flip(picture, seed)
            truth = images.flip_if(truth, flipped)
    picture = tf.image.resize(picture, size) / 255.0
    truth = images.resize_mask(truth, size)  # nearest: a mask stays 0 or 255
    return picture, tf.cast(truth > 127, tf.int32)


def parse(serialized, params, seed=None):
    """A batch of records to ``({"image", "filename"}, mask)``."""
    parsed = records.parse_batch(serialized, params.image_key, params.mask_key, label="mask")
    size = params.image_size
    signature = (
        tf.TensorSpec([size, size, 3], tf.float32),
        tf.TensorSpec([size, size, 1], tf.int32),
    )

    def one(pair, seed=None):
        return decode_pair(*pair, params, seed)

    pictures, masks = images.map_images(
        one, (parsed["image"], parsed["label"]), (size, size, 3), seed, signature
    )
    return {"image": pictures, "filename": parsed["filename"]}, masks


def input_fn(file_pattern, mode, params, input_context=None):
    training = mode == ModeKeys.TRAIN
    dataset = read_records(
        file_pattern,
        training,
        shuffle_buffer=params.shuffle_buffer,
        seed=params.random_seed,
        input_context=input_context,
    )
    batch = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(replica_batch_size(batch, input_context), drop_remainder=training)
    if training:  # stateless augmentation, one seed per batch: the pipeline can be saved
        dataset = tf.data.Dataset.zip(dataset, random_seeds(params.random_seed))
        dataset = dataset.map(
            lambda serialized, seed: parse(serialized, params, seed),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        dataset = dataset.map(
            lambda serialized: parse(serialized, params), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def serving_fn(inputs, params):
    """The exported model's features from encoded images (the kit's ``image_bytes``)."""
    size = [params.image_size, params.image_size]

    def one(encoded):
        return tf.image.resize(images.decode(encoded, channels=3), size) / 255.0

    return {"image": images.map_images(one, inputs["image_bytes"], size, channels=3)}


def conv_block(x, filters, name=None):
    """Two 3x3 convolutions, each with batch norm and ReLU."""
    for index in range(2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name=name if index == 1 else None)(x)
    return x


def model_fn(params):
    """A small U-Net: a block per entry of ``filters``, halving the picture between them
    (``block1``... on the way down), then back up, each step joined by the block of its
    resolution (the fine detail the bottleneck lost); a logit per pixel (``mask``)."""
    size = params.image_size
    inputs = keras.Input((size, size, 3), name="image")
    x, skips = inputs, []
    for index, filters in enumerate(params.filters[:-1], 1):
        x = conv_block(x, filters, name=f"block{index}")
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    x = conv_block(x, params.filters[-1], name=f"block{len(params.filters)}")
    for filters, skip in zip(reversed(params.filters[:-1]), reversed(skips), strict=True):
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same")(x)
        x = conv_block(keras.layers.Concatenate()([x, skip]), filters)
    logits = keras.layers.Conv2D(1, 1, name="mask", dtype="float32")(x)
    return keras.Model({"image": inputs}, logits, name="unet")


def loss_fn(labels, outputs, params):
    """Two named per-example terms: the per-pixel cross-entropy (averaged over the pixels)
    and the dice loss (1 - the soft overlap of predicted and true digit), which a small
    digit on a large background needs: alone, the cross-entropy is low for a mask of
    background everywhere."""
    truth = tf.cast(labels, tf.float32)
    logits = tf.cast(outputs, tf.float32)
    pixels = tf.nn.sigmoid_cross_entropy_with_logits(truth, logits)
    probability = tf.sigmoid(logits)
    overlap = tf.reduce_sum(probability * truth, axis=[1, 2, 3])
    total = tf.reduce_sum(probability + truth, axis=[1, 2, 3])
    dice = 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)
    return {
        "cross_entropy": tf.reduce_mean(pixels, axis=[1, 2, 3]),
        "dice": params.dice_weight * dice,
    }


def optimizer_fn(params, plan):
    rate = keras.optimizers.schedules.CosineDecay(params.learning_rate, plan.schedule_steps)
    return keras.optimizers.Adam(rate)


def metrics_fn(params):
    """The mean IoU over background and digit (``iou``), and the digit's alone; a pixel is
    the digit where its logit is positive (probability above 1/2)."""
    return {
        "iou": keras.metrics.BinaryIoU(target_class_ids=(0, 1), threshold=0.0, name="iou"),
        "foreground_iou": keras.metrics.BinaryIoU(
            target_class_ids=(1,), threshold=0.0, name="foreground_iou"
        ),
    }


def predictions_fn(outputs, params):
    """The predicted mask of each example as a PNG (255: the digit) and the share of its
    pixels that are the digit."""
    digit = tf.cast(outputs, tf.float32) > 0.0
    pixels = tf.cast(digit, tf.uint8) * 255
    return {
        "mask": tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string),
        "foreground": tf.reduce_mean(tf.cast(digit, tf.float32), axis=[1, 2, 3]),
    }


def callbacks_fn(params):
    """The kit's figures (the input in TensorBoard; image, true and predicted masks at each
    evaluation and in the best folder) and a CSV log."""
    recorders = [CSVLogger()]
    if params.plots:
        recorders += [ImageSummaries(), MaskFigures(classes=2)]
    return recorders
