"""The input pipeline: shapes, dtypes and labels, eagerly and inside tf.data; bad shards."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from projects.classifier import functions
from support import jpeg_bytes, params, textured_image

from library.contract import ModeKeys
from library.data import diagnose, files, pipeline
from library.data import records as data_records
from library.vision import images, records, serving


def params_for(records_dir, **overrides):
    return params(records_dir, None, **{"image_size": 24, "eval_batch_size": 5, **overrides})


def test_parse_batch_agrees_eagerly_and_inside_tf_data():
    serialized = [
        records.serialize_example(b"bytes-%d" % i, i, f"c{i}", 10 + i, 20 + i, f"f{i}.jpg")
        for i in range(3)
    ]
    eager = records.parse_batch(tf.constant(serialized))
    assert eager["image"].numpy().tolist() == [b"bytes-0", b"bytes-1", b"bytes-2"]
    assert eager["label"].dtype == tf.int32 and eager["label"].numpy().tolist() == [0, 1, 2]
    assert eager["filename"].numpy().tolist() == [b"f0.jpg", b"f1.jpg", b"f2.jpg"]
    in_graph = next(
        iter(tf.data.Dataset.from_tensor_slices(serialized).batch(3).map(records.parse_batch))
    )
    for key in eager:
        assert in_graph[key].numpy().tolist() == eager[key].numpy().tolist()


def test_records_without_filename_from_other_tools_parse():
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
            }
        )
    )
    parsed = records.parse_batch(tf.constant([example.SerializeToString()]))
    assert parsed["label"].numpy().tolist() == [3] and parsed["filename"].numpy().tolist() == [b""]


def test_central_crop_decodes_only_the_window_and_handles_png():
    image = textured_image(60, 40, seed=3)
    jpeg = tf.constant(jpeg_bytes(image))
    crop = images.decode_and_central_crop(jpeg, fraction=1.0)
    assert crop.shape == (40, 40, 3) and crop.dtype == tf.uint8  # the middle 40 of 60 columns
    png = tf.io.encode_png(np.asarray(image))
    from_png = images.decode_and_central_crop(png, fraction=1.0)
    np.testing.assert_allclose(
        from_png.numpy().astype(float), np.asarray(image)[:, 10:50].astype(float), atol=0.5
    )
    np.testing.assert_allclose(crop.numpy() / 255, from_png.numpy() / 255, atol=0.08)  # JPEG loss
    half = images.decode_and_central_crop(jpeg, fraction=0.5)
    assert half.shape == (20, 20, 3)


def test_count_records_without_manifest_reads_the_shards(stripes_records, tmp_path):
    for name in os.listdir(stripes_records):
        if name.startswith("eval-"):
            shutil.copy(stripes_records / name, tmp_path / name)
    assert data_records.count_records(str(tmp_path / "eval-*")) == 16


def test_missing_files_name_the_pattern(tmp_path):
    with pytest.raises(files.InputError, match="nothing-here-\\*: no files match"):
        pipeline.read_records(str(tmp_path / "nothing-here-*"), training=True)


@pytest.fixture
def truncated_copy(stripes_records, tmp_path):
    for name in os.listdir(stripes_records):
        if name.startswith("train-") or name.endswith(".json") or name == "labels.txt":
            shutil.copy(stripes_records / name, tmp_path / name)
    shard = tmp_path / "train-00001-of-00002.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    return tmp_path, shard


def test_truncated_shard_is_named_by_diagnose(truncated_copy):
    folder, shard = truncated_copy
    params = params_for(folder)
    with pytest.raises(tf.errors.DataLossError):
        for _ in tf.data.TFRecordDataset(str(shard)):
            pass
    message = diagnose.find_corrupt_shard(params.train_files)
    assert message.startswith(f"{shard}: corrupt or truncated shard after record")
    assert "skip_corrupt_records" in message


def test_skip_corrupt_records_reads_the_rest_and_reports_the_loss(truncated_copy):
    folder, shard = truncated_copy
    params = params_for(folder, skip_corrupt_records=True, eval_batch_size=100)
    dataset = pipeline.read_records(params.train_files, training=False, skip_corrupt=True)
    read = sum(1 for _ in dataset)
    lines = diagnose.report_lost_records(params.train_files)
    assert len(lines) == 1 and lines[0].startswith(str(shard))
    lost = int(lines[0].split("skipping ")[1].split(" of ")[0])
    assert read == 48 - lost and lost > 0
    assert "of 24 records" in lines[0]
    # The option the user sets reaches the project's input_fn: it reads the same records.
    labels = [
        label
        for _, batch in functions.input_fn(params.train_files, ModeKeys.EVAL, params)
        for label in batch.numpy()
    ]
    assert len(labels) == 48 - lost


def test_undecodable_record_is_named_by_filename(tmp_path, stripes_records):
    path = str(tmp_path / "bad-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        good = jpeg_bytes(textured_image(20, 20, seed=1))
        writer.write(records.serialize_example(good, 0, "a", 20, 20, "a/good.jpg"))
        writer.write(records.serialize_example(b"\xff\xd8garbage", 1, "b", 20, 20, "b/broken.jpg"))
    params = params_for(stripes_records)
    error = tf.errors.InvalidArgumentError(None, None, "Invalid JPEG data or crop window")
    message = serving.find_undecodable_image(path, params, error)
    assert message == f"{path}: record 1 (b/broken.jpg) holds an image that does not decode"
    assert serving.find_undecodable_image(params.train_files, params, error) is None
    # An error that is not about decoding (a shape bug) scans nothing.
    shape_bug = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [8,2] vs [8,3]")
    assert serving.find_undecodable_image(path, params, shape_bug) is None


def test_each_worker_reads_its_share_of_the_files_or_of_the_records(stripes_records, capsys):
    def shares(pattern):
        got = []
        for worker in range(2):
            context = tf.distribute.InputContext(2, worker, 2)
            records = pipeline.read_records(pattern, training=False, input_context=context)
            got.append({r.numpy() for r in records})
        return got

    everything = {r.numpy() for r in pipeline.read_records(str(stripes_records / "eval-*"), False)}
    by_file = shares(str(stripes_records / "eval-*"))  # two shards for two workers
    assert by_file[0] and by_file[1] and not by_file[0] & by_file[1]
    assert by_file[0] | by_file[1] == everything
    assert "warning" not in capsys.readouterr().out
    one_file = str(stripes_records / "eval-00000-of-00002.tfrecord")
    by_record = shares(one_file)  # fewer files than workers: records are split
    assert "1 files for 2 input pipelines" in capsys.readouterr().out
    assert by_record[0] and by_record[1] and not by_record[0] & by_record[1]
    assert by_record[0] | by_record[1] == {
        r.numpy() for r in pipeline.read_records(one_file, False)
    }


def test_records_of_any_schema_are_counted_from_their_own_manifest(tmp_path):
    """Two datasets in one folder: each pattern counts and names its own manifest only."""
    for name, count in (("a", 5), ("b", 7)):
        writer = data_records.RecordWriter(str(tmp_path), name, num_shards=2)
        for i in range(count):
            writer.write(data_records.example({"x": float(i), "y": [i, i + 1], "tag": f"r{i}"}))
        manifest = writer.close(source="test")
        assert manifest["num_records"] == count and manifest["source"] == "test"
    assert data_records.count_records(str(tmp_path / "a-*")) == 5
    assert data_records.count_records(str(tmp_path / "b-*")) == 7
    assert data_records.manifest_paths(str(tmp_path / "a-*")) == [str(tmp_path / "a.manifest.json")]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    parsed = tf.io.parse_single_example(
        next(iter(tf.data.TFRecordDataset(str(tmp_path / "b-00000-of-00002.tfrecord")))),
        {
            "x": tf.io.FixedLenFeature([], tf.float32),
            "y": tf.io.FixedLenFeature([2], tf.int64),
            "tag": tf.io.FixedLenFeature([], tf.string),
        },
    )
    assert (float(parsed["x"]), parsed["y"].numpy().tolist(), parsed["tag"].numpy()) == (0.0, [0, 1], b"r0")  # fmt: skip
    with pytest.raises(data_records.RecordError, match="exists; pass --overwrite"):
        data_records.RecordWriter(str(tmp_path), "a", num_shards=1)
