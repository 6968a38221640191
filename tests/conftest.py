"""Shared fixtures: small TFRecords made by the library's own converter, and one small trained
run per session that every test which only reads a run reads (a test that changes a run
works on a copy of it)."""

import contextlib
import os
import shutil
from dataclasses import dataclass

import pytest
import support

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def stripes_records(tmp_path_factory):
    """Train (48) and eval (16) TFRecords of a two-class stripes tree, in 2 shards each."""
    from library.vision.convert import ConvertOptions, convert

    base = tmp_path_factory.mktemp("stripes")
    support.make_class_tree(str(base / "images" / "train"), per_class=24, seed=1)
    support.make_class_tree(str(base / "images" / "eval"), per_class=8, seed=2)
    out = base / "records"
    for split in ("train", "eval"):
        options = ConvertOptions(
            dataset_dir=str(base / "images" / split),
            tfrecord_filename=split,
            tfrecord_dir=str(out),
            num_shards=2,
            num_workers=1,
        )
        convert(options)
    return out


@pytest.fixture(scope="session")
def regression_data(tmp_path_factory):
    """128 training and 64 evaluation rows as records with manifests (the library's writer,
    2 shards each), and the evaluation rows again as CSV (``eval.csv``)."""
    from library.data.records import RecordWriter, example

    folder = tmp_path_factory.mktemp("regression")
    for name, count, seed in (("train", 128, 1), ("eval", 64, 2)):
        writer = RecordWriter(str(folder), name, num_shards=2)
        rows = support.regression_rows(count, seed)
        for row in rows:
            writer.write(example(row))
        writer.close(columns=list(row))
    with open(folder / "eval.csv", "w", encoding="utf-8") as stream:
        stream.write("a,b,c,y\n")
        stream.writelines(f"{r['a']},{r['b']},{r['c']},{r['y']}\n" for r in rows)
    return folder


@pytest.fixture(scope="session")
def text_data(tmp_path_factory):
    """Training (96) and evaluation (32) sentences of two topics, as records in folders of
    their own (``train``, ``eval``), and the evaluation sentences as JSON lines."""
    import json

    folder = tmp_path_factory.mktemp("text")
    support.write_text_records(folder / "train", "train", support.text_rows(96, seed=1))
    rows = support.text_rows(32, seed=2)
    support.write_text_records(folder / "eval", "eval", rows)
    with open(folder / "eval.jsonl", "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    return folder


@dataclass(frozen=True)
class TrainedRun:
    """A run of the test project with everything on (``full``), as ``run.py`` trains it: 4
    steps, evaluated at steps 2 and 4. Its folders are relative to ``folder`` (where it
    ran), so that a copy of ``folder`` is the same run in another place."""

    folder: str
    records: str
    result: support.Result  # what training printed
    argv: tuple[str, ...]  # its command line (run from ``folder``)

    @property
    def model_dir(self):
        return os.path.join(self.folder, "model")

    @property
    def best_dir(self):
        return os.path.join(self.folder, "best")

    def params(self, **overrides):
        """Its configuration with absolute folders (usable from any working directory)."""
        return support.params(self.records, self.folder, "full", **overrides)


@pytest.fixture(scope="session")
def trained(stripes_records, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("trained"))
    records = str(stripes_records)
    argv = support.argv(records, None, "--model_dir", "model", "--best_model_dir", "best", config_set="full")  # fmt: skip
    with contextlib.chdir(folder):
        result = support.run_cli(*argv)
    assert result.returncode == 0, result.stderr
    return TrainedRun(folder, records, result, tuple(argv))


@pytest.fixture
def trained_copy(trained, tmp_path, monkeypatch):
    """A copy of the trained run to change, as the current directory: the same command line
    (``trained.argv``) resumes it."""
    folder = tmp_path / "run"
    shutil.copytree(trained.folder, folder)
    monkeypatch.chdir(folder)
    return TrainedRun(str(folder), trained.records, trained.result, trained.argv)
