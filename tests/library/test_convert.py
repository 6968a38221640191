"""convert_dataset.py: folders of images to TFRecord shards, checked record by record."""

import glob
import io
import json
import os

import pytest
import tensorflow as tf
from PIL import Image
from support import Result, jpeg_bytes, make_class_tree, save, textured_image

import convert_dataset
from library.vision import records


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree") / "images"
    small = textured_image(64, 48, seed=1)
    files = {
        "cats/small.jpg": save(small, str(root / "cats/small.jpg"), quality=90),
        "cats/big.jpg": save(textured_image(300, 200, seed=2), str(root / "cats/big.jpg")),
        "cats/nested/deep/alpha.png": save(
            textured_image(50, 30, seed=3, mode="RGBA"), str(root / "cats/nested/deep/alpha.png")
        ),
        "dogs/gray.jpg": save(
            textured_image(40, 40, seed=4, mode="L"), str(root / "dogs/gray.jpg")
        ),
        "dogs/cmyk.jpg": save(
            textured_image(60, 20, seed=5, mode="CMYK"), str(root / "dogs/cmyk.jpg")
        ),
        "dogs/palette.GIF": save(
            textured_image(30, 30, seed=6, mode="P"), str(root / "dogs/palette.GIF")
        ),
    }
    rotated = textured_image(80, 40, seed=7)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    files["dogs/ROTATED.JPEG"] = save(rotated, str(root / "dogs/ROTATED.JPEG"), exif=exif)
    whole = jpeg_bytes(textured_image(64, 64, seed=8))
    (root / "dogs/truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "dogs/notes.txt").write_text("not an image")
    (root / "dogs/fake.png").write_text("not a png either")
    return root, files


def run_convert(*argv):
    """convert_dataset.py in this process: its exit status and what it printed."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = convert_dataset.main(list(argv))
    return Result(status, out.getvalue(), err.getvalue())


def read_records(pattern):
    examples = {}
    for path in sorted(glob.glob(pattern)):
        for raw in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(raw.numpy())
            feature = example.features.feature
            filename = feature[records.FILENAME].bytes_list.value[0].decode()
            examples[filename] = {
                "encoded": feature[records.ENCODED].bytes_list.value[0],
                "label": feature[records.LABEL].int64_list.value[0],
                "text": feature[records.TEXT].bytes_list.value[0].decode(),
                "height": feature[records.HEIGHT].int64_list.value[0],
                "width": feature[records.WIDTH].int64_list.value[0],
                "format": feature[records.FORMAT].bytes_list.value[0],
                "shard": os.path.basename(path),
            }
    return examples


@pytest.fixture(scope="module")
def converted(tree, tmp_path_factory):
    root, _ = tree
    out = tmp_path_factory.mktemp("out")
    result = run_convert(
        "--dataset_dir", str(root), "--tfrecord_filename", "train", "--tfrecord_dir", str(out),
        "--max_edge", "100", "--num_shards", "3", "--num_workers", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out, result, read_records(str(out / "train-*.tfrecord"))


def test_every_image_becomes_one_record_with_the_right_label(converted, tree):
    _, files = tree
    _, _, examples = converted
    assert sorted(examples) == sorted(files)
    for name, example in examples.items():
        expected = 0 if name.startswith("cats/") else 1
        assert example["label"] == expected
        assert example["text"] == ("cats" if expected == 0 else "dogs")
        assert example["format"] == b"jpeg"
        image = Image.open(io.BytesIO(example["encoded"]))
        assert image.format == "JPEG" and image.mode == "RGB"
        assert (example["height"], example["width"]) == (image.height, image.width)


def test_small_jpeg_is_stored_byte_for_byte_and_large_one_is_resized(converted, tree):
    _, files = tree
    _, _, examples = converted
    with open(files["cats/small.jpg"], "rb") as stream:
        assert examples["cats/small.jpg"]["encoded"] == stream.read()
    big = examples["cats/big.jpg"]
    assert (big["width"], big["height"]) == (100, 67)  # aspect ratio kept, longer edge 100


def test_exif_orientation_is_applied(converted):
    _, _, examples = converted
    rotated = examples["dogs/ROTATED.JPEG"]
    assert (rotated["width"], rotated["height"]) == (40, 80)


def test_unreadable_files_are_skipped_and_listed(converted):
    out, result, _ = converted
    manifest = json.loads((out / "train.manifest.json").read_text())
    skipped = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert sorted(skipped) == ["dogs/fake.png", "dogs/truncated.jpg"]
    assert all(reason.startswith("cannot decode") for reason in skipped.values())
    assert "skipped" in result.stderr and "truncated.jpg" in result.stderr
    assert "skipped 2 unreadable files" in result.stdout


def test_manifest_labels_and_shards_agree_with_the_records(converted):
    out, _, examples = converted
    manifest = json.loads((out / "train.manifest.json").read_text())
    assert manifest["classes"] == ["cats", "dogs"]
    assert (out / "labels.txt").read_text() == "cats\ndogs\n"
    assert manifest["num_records"] == len(examples) == 7
    assert manifest["class_counts"] == {"cats": 3, "dogs": 4}
    shard_counts = {s["file"]: s["num_records"] for s in manifest["shards"]}
    assert sorted(shard_counts) == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    for shard, count in shard_counts.items():
        assert sum(e["shard"] == shard for e in examples.values()) == count
    assert not [n for n in os.listdir(out) if "tmp" in n]


def test_test_set_with_labels_file_gets_the_same_ids(converted, tmp_path):
    out, _, _ = converted
    only_dogs = tmp_path / "test"
    save(textured_image(20, 20, seed=9), str(only_dogs / "dogs/x.jpg"))
    result = run_convert(
        "--dataset_dir", str(only_dogs), "--tfrecord_filename", "test",
        "--tfrecord_dir", str(tmp_path / "out"), "--labels_file", str(out / "labels.txt"),
        "--num_workers", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    examples = read_records(str(tmp_path / "out/test-*.tfrecord"))
    assert examples["dogs/x.jpg"]["label"] == 1
    save(textured_image(20, 20, seed=9), str(only_dogs / "birds/y.jpg"))
    result = run_convert(
        "--dataset_dir", str(only_dogs), "--tfrecord_filename", "test",
        "--tfrecord_dir", str(tmp_path / "out2"), "--labels_file", str(out / "labels.txt"),
        "--num_workers", "1",
    )  # fmt: skip
    assert result.returncode == 2 and "'birds'" in result.stderr


def test_records_are_shuffled_across_shards(tmp_path):
    make_class_tree(str(tmp_path / "img"), per_class=20)
    result = run_convert(
        "--dataset_dir", str(tmp_path / "img"), "--tfrecord_filename", "t",
        "--tfrecord_dir", str(tmp_path / "out"), "--num_shards", "2", "--num_workers", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for shard in ("t-00000-of-00002.tfrecord", "t-00001-of-00002.tfrecord"):
        labels = [
            tf.train.Example.FromString(raw.numpy())
            .features.feature[records.LABEL]
            .int64_list.value[0]
            for raw in tf.data.TFRecordDataset(str(tmp_path / "out" / shard))
        ]
        assert set(labels) == {0, 1}
        assert labels != sorted(labels)  # mixed in each shard, not in class order


@pytest.mark.parametrize(
    "setup, argv, message",
    [
        (None, ["--dataset_dir", "{tmp}/missing"], "missing: no such folder"),
        ("empty", ["--dataset_dir", "{tmp}/img"], "no images"),
        ("one_class", ["--dataset_dir", "{tmp}/img"], "only one class"),
        (
            "two_classes",
            ["--dataset_dir", "{tmp}/img", "--tfrecord_dir", "/proc/forbidden"],
            "cannot write",
        ),
        ("existing", ["--dataset_dir", "{tmp}/img"], "exists; pass --overwrite"),
        ("truncated", ["--dataset_dir", "{tmp}/img", "--strict"], "bad.jpg: cannot decode"),
        (None, ["--dataset_dir", "{tmp}/img", "--max_edge", "x"], "--max_edge: invalid int value"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, setup, argv, message):
    image = textured_image(20, 20, seed=0)
    if setup == "empty":
        (tmp_path / "img/a").mkdir(parents=True)
    if setup in ("one_class", "two_classes", "existing", "truncated"):
        save(image, str(tmp_path / "img/a/1.jpg"))
    if setup in ("two_classes", "existing", "truncated"):
        save(image, str(tmp_path / "img/b/1.jpg"))
    if setup == "existing":
        (tmp_path / "out").mkdir()
        (tmp_path / "out/t-00000-of-00001.tfrecord").write_bytes(b"")
    if setup == "truncated":
        (tmp_path / "img/b/bad.jpg").write_bytes(jpeg_bytes(image)[:100])
    argv = [a.format(tmp=tmp_path) for a in argv]
    defaults = {
        "--tfrecord_filename": "t",
        "--tfrecord_dir": str(tmp_path / "out"),
        "--num_workers": "1",
    }
    for key, value in defaults.items():
        if key not in argv:
            argv += [key, value]
    result = run_convert(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1]
    assert len([line for line in lines if "error" in line]) == 1
    if setup == "existing":
        assert (tmp_path / "out/t-00000-of-00001.tfrecord").read_bytes() == b""
    if setup == "truncated":
        assert not glob.glob(str(tmp_path / "out/t-*"))


def test_overwrite_replaces_previous_output_and_leftovers(tmp_path):
    make_class_tree(str(tmp_path / "img"), per_class=3)
    argv = ["--dataset_dir", str(tmp_path / "img"), "--tfrecord_filename", "t"]
    argv += ["--tfrecord_dir", str(tmp_path / "out"), "--num_workers", "1"]
    assert run_convert(*argv, "--num_shards", "3").returncode == 0
    killed = tmp_path / "out" / ".t.tmp-99999"  # a killed conversion's unfinished shards
    killed.mkdir()
    (killed / "t-00000-of-00002.tfrecord").write_bytes(b"partial")
    assert run_convert(*argv, "--num_shards", "2", "--overwrite").returncode == 0
    assert sorted(os.listdir(tmp_path / "out")) == [
        "labels.txt",
        "t-00000-of-00002.tfrecord",
        "t-00001-of-00002.tfrecord",
        "t.manifest.json",
    ]


def test_converter_refuses_an_empty_class_and_names_stray_files_and_reasons(tmp_path):
    tree = tmp_path / "images"
    make_class_tree(str(tree), per_class=3)
    (tree / "empty").mkdir()
    (tree / "stray.jpg").write_bytes(jpeg_bytes(textured_image(10, 10, seed=2)))
    argv = ["--dataset_dir", str(tree), "--tfrecord_filename", "t"]
    argv += ["--tfrecord_dir", str(tmp_path / "out"), "--num_workers", "1"]
    refused = run_convert(*argv)
    assert refused.returncode == 2
    assert f"{tree / 'empty'}: class folder holds no images" in refused.stderr
    (tree / "empty").rmdir()
    (tree / "vertical" / "broken.jpg").write_bytes(b"not an image at all")
    converted = run_convert(*argv)
    assert converted.returncode == 0, converted.stderr
    assert "ignored 1 files at the top of" in converted.stderr and "stray.jpg" in converted.stderr
    manifest = json.loads((tmp_path / "out" / "t.manifest.json").read_text())
    assert manifest["ignored"] == ["stray.jpg"]
    (reason,) = [s["reason"] for s in manifest["skipped"]]
    assert reason == "cannot decode: not an image, or a format PIL cannot read"
    assert "object at 0x" not in converted.stderr
