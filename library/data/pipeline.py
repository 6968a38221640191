"""tf.data building blocks a project's ``input_fn`` composes for records of any schema: no
policy lives here. The shape of a fast pipeline (see BENCHMARKS.md)::

    list_files -> interleave(TFRecordDataset) -> shuffle -> repeat -> batch
      -> parse the whole batch (tf.io.parse_example) -> decode / augment -> prefetch

The library then hands batches to the devices (``library/engine/distribute.py``). Decoding
images belongs to the image-classification kit (``library/vision``).
"""

from __future__ import annotations

import tensorflow as tf

from library.data.files import check_tfrecords

AUTOTUNE = tf.data.AUTOTUNE
READ_BUFFER_BYTES = 8 << 20


def replica_batch_size(global_batch_size: int, input_context=None) -> int:
    """The batch one input pipeline makes: the global batch divided among the replicas.

    ``input_context`` is the ``tf.distribute.InputContext`` the library passes to
    ``input_fn`` (None without a distribution strategy).
    """
    if input_context is None:
        return global_batch_size
    return input_context.get_per_replica_batch_size(global_batch_size)


def read_records(
    file_pattern: str,
    training: bool,
    cycle_length: int = 4,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
    skip_corrupt: bool = False,
    input_context=None,
) -> tf.data.Dataset:
    """Serialized records from interleaved shards; shuffled and repeated for training.

    With several input pipelines (multi-worker training), each reads its own share of the
    files; with fewer files than pipelines, every pipeline reads all files and keeps its
    share of the records (slower: each reads everything), said in a warning.
    """
    count = len(check_tfrecords(file_pattern))
    files = tf.data.Dataset.list_files(file_pattern, shuffle=training, seed=seed)
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    by_record = pipelines > 1 and count < pipelines
    if by_record:
        print(
            f"warning: {file_pattern}: {count} files for {pipelines} input pipelines; each "
            "reads them all and keeps its share of the records (convert into more shards)"
        )
    elif pipelines > 1:
        files = files.shard(pipelines, input_context.input_pipeline_id)

    def read(path):
        dataset = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES)
        return dataset.ignore_errors() if skip_corrupt else dataset

    dataset = files.interleave(
        read,
        cycle_length=cycle_length,
        num_parallel_calls=AUTOTUNE,
        # Training takes whichever shard is ready first unless the run option
        # ``deterministic`` asks otherwise (the library sets the dataset's options: None
        # follows them); pipelines that split the records by position must see one order.
        deterministic=True if by_record else (None if training else True),
    )
    if by_record:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    return dataset


def random_seeds(seed: int) -> tf.data.Dataset:
    """An endless dataset of stateless-op seeds (shape [2]) to zip beside the data."""
    return tf.data.Dataset.random(seed=seed).batch(2)
