"""Data for the image classifier's own tests: the image kit's sample (striped images of two
classes as records, and their labels file)."""

import pathlib

import pytest

from library.vision import sample


@pytest.fixture(scope="session")
def records(tmp_path_factory) -> pathlib.Path:
    """A folder of ``train-*.tfrecord`` (32 images) and ``eval-*.tfrecord`` (16) shards."""
    folder = tmp_path_factory.mktemp("classifier-sample")
    sample.write_sample(str(folder))
    return folder / "records"
