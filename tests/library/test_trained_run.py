"""What one run of run.py leaves behind, and the modes that read a run: evaluate, predict,
export, inspect; a refused resume; provenance; an evaluation lost to a kill."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from projects.classifier import functions
from support import event_tags, jpeg_bytes, one_line, run_cli, textured_image

from library.config import CHANGES_FILE, load_sets
from library.outputs import checkpoints, run_state
from library.recorders import metrics_log


def read_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def test_a_run_leaves_outputs_that_agree(trained):
    model_dir, best_dir = trained.model_dir, trained.best_dir
    assert "output folder" in trained.result.stdout and model_dir in trained.result.stdout
    # Checkpoints at each evaluation (4 steps, eval every 2).
    assert [n for n, _ in checkpoints.numbered_checkpoints(model_dir)] == [4, 2]
    # metrics.jsonl and best.json agree on the best evaluation.
    records = metrics_log.read_metrics(model_dir)
    assert [r["step"] for r in records] == [2, 4]
    assert all({"epoch", "train_loss", "eval_loss", "eval_accuracy"} <= set(r) for r in records)
    best = read_json(os.path.join(best_dir, "best.json"))
    best_record = min(records, key=lambda r: r["eval_loss"])
    assert best["metric"] == "loss" and best["step"] == best_record["step"]
    assert best["value"] == pytest.approx(best_record["eval_loss"])
    assert os.path.exists(os.path.join(best_dir, f"{best['checkpoint']}.index"))
    # The resolved configuration, the model summary, plots and TensorBoard events.
    saved = load_sets(os.path.join(model_dir, "project.yaml"))["full"]
    assert saved["train_steps"] == 4 and saved["model_dir"] == "model"
    assert load_sets(os.path.join(model_dir, "hyperparameters.yaml"))["default"]["num_classes"] == 2
    with open(os.path.join(model_dir, "model_summary.txt"), encoding="utf-8") as stream:
        assert "Total params" in stream.read()
    for plot in ("loss.png", "eval_accuracy.png", "learning_rate.png"):
        with open(os.path.join(model_dir, "plots", plot), "rb") as stream:
            assert stream.read(4) == b"\x89PNG"
    train_tags = event_tags(os.path.join(model_dir, "train"))
    eval_tags = event_tags(os.path.join(model_dir, "eval"))
    assert {"loss", "learning_rate", "steps_per_sec", "input_wait", "input"} <= set(train_tags)
    assert eval_tags["loss"] == eval_tags["accuracy"] == [2, 4]
    # The best SavedModel loads back and predicts from encoded image bytes what the best
    # checkpoint's weights predict.
    assert best["saved_model_step"] == best["step"]
    serve = tf.saved_model.load(os.path.join(best_dir, "saved_model")).signatures["serving_default"]
    images = [jpeg_bytes(textured_image(40, 40, seed=s)) for s in (1, 2)]
    out = serve(image_bytes=tf.constant(images))
    params = trained.params()
    net = functions.model_fn(params.replace(num_classes=2))
    prefix = os.path.join(best_dir, best["checkpoint"])
    tf.train.Checkpoint(model=net).restore(prefix).expect_partial()
    features = functions.decode(tf.constant(images), params)
    by_hand = tf.nn.softmax(net({"image": features}, training=False)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), by_hand, rtol=1e-4, atol=1e-6)
    assert set(out["class_name"].numpy()) <= {b"horizontal", b"vertical"}


def test_best_figures_and_activation_histograms_are_written(trained):
    for name in ("confusion_matrix.png", "predictions.png"):
        with open(os.path.join(trained.best_dir, name), "rb") as stream:
            assert stream.read(4) == b"\x89PNG", name
    tags = set(event_tags(os.path.join(trained.model_dir, "eval")))
    assert "activations/block1" in tags
    assert "loss" in tags and "accuracy" in tags
    assert any(t.endswith("kernel") for t in tags)  # weight histograms
    assert "first_layer_filters" in tags


def test_evaluate_predict_and_export_modes(trained, tmp_path):
    argv = [*trained.argv, "--model_dir", trained.model_dir, "--best_model_dir", trained.best_dir]
    evaluated = run_cli(*argv, "--mode", "evaluate", "--checkpoint", "best")
    assert evaluated.returncode == 0, evaluated.stderr
    # The best checkpoint (in best_model_dir), evaluated on the same data as during training.
    best = read_json(os.path.join(trained.best_dir, "best.json"))
    row = next(r for r in metrics_log.read_metrics(trained.model_dir) if r["step"] == best["step"])
    eval_files = trained.params().eval_files
    prefix = os.path.join(trained.best_dir, best["checkpoint"])
    assert f"evaluated {prefix} on {eval_files}" in evaluated.stdout
    assert f"loss {row['eval_loss']:.4f}, accuracy {row['eval_accuracy']:.4f}" in evaluated.stdout
    assert "train_files:" not in evaluated.stdout  # a short header, not the whole configuration
    # Predict: one line per image and predictions.csv, beside the checkpoint (in a copy of
    # the run folder, so the run stays as trained).
    images = tmp_path / "predict"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(jpeg_bytes(textured_image(30, 30, seed=i)))
    copy = tmp_path / "model"
    import shutil

    shutil.copytree(trained.model_dir, copy)
    predicted = run_cli(*argv, "--model_dir", str(copy), "--mode", "predict", "--predict_files", str(images / "*.jpg"))  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert f"predicting the examples of 3 files with {copy}/ckpt-4" in predicted.stdout
    assert f"predictions of 3 examples written to {copy / 'predictions.csv'}" in predicted.stdout
    with open(copy / "predictions.csv", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    # Every key predictions_fn returns: scalars as columns, vectors as JSON lists.
    assert list(rows[0]) == ["file", "class", "probability", "probabilities", "class_name"]
    assert all(len(json.loads(r["probabilities"])) == 2 for r in rows)
    printed = {
        os.path.basename(r["file"]): (r["class_name"], float(r["probability"])) for r in rows
    }
    assert sorted(printed) == ["0.jpg", "1.jpg", "2.jpg"]
    for r in rows:
        line = f"{r['file']}: class {r['class']}, probability {float(r['probability']):.3f}, class_name {r['class_name']}"  # fmt: skip
        assert line in predicted.stdout
    # What the latest weights say about the same images, computed here by hand.
    params = trained.params(num_classes=2)
    net = functions.model_fn(params)
    tf.train.Checkpoint(model=net).restore(os.path.join(trained.model_dir, "ckpt-4")).expect_partial()  # fmt: skip
    encoded = tf.constant([(images / name).read_bytes() for name in sorted(printed)])
    logits = net({"image": functions.decode(encoded, params)}, training=False)
    probabilities = tf.nn.softmax(logits).numpy()
    names = ["horizontal", "vertical"]
    for name, row in zip(sorted(printed), probabilities, strict=True):
        assert printed[name] == (names[row.argmax()], pytest.approx(row.max(), abs=5e-4))
    # Export: a SavedModel that serves what the weights compute.
    exported = run_cli(*argv, "--mode", "export", "--export_dir", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    (path,) = [str(p) for p in (tmp_path / "export").iterdir()]
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert f"exported SavedModel: {path}" in exported.stdout
    serve = tf.saved_model.load(path).signatures["serving_default"]
    served = serve(image_bytes=encoded)
    np.testing.assert_allclose(served["probabilities"].numpy(), probabilities, rtol=1e-4, atol=1e-6)
    assert [n.decode() for n in served["class_name"].numpy()] == [
        printed[n][0] for n in sorted(printed)
    ]
    empty = run_cli(*argv, "--mode", "evaluate", "--model_dir", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "no checkpoint to load" in one_line(empty.stderr)


def test_predict_skips_a_bad_image_and_writes_a_csv(trained_copy, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(jpeg_bytes(textured_image(30, 30, seed=i)))
    whole = jpeg_bytes(textured_image(64, 64, seed=9))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    extra = tmp_path / "extra.jpg"
    extra.write_bytes(jpeg_bytes(textured_image(30, 30, seed=7)))
    result = run_cli(*trained_copy.argv, "--mode", "predict", "--predict_files", f"{folder},{extra}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"skipped {folder / 'truncated.jpg'}: cannot decode: truncated (the file ends before the image does)"
    ]
    assert "predicting the examples of 5 files with model/ckpt-4" in result.stdout
    assert "predictions of 4 examples written to model/predictions.csv (1 skipped)" in result.stdout
    with open("model/predictions.csv", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted(os.path.basename(r["file"]) for r in rows) == [
        "0.jpg",
        "1.jpg",
        "2.jpg",
        "extra.jpg",
    ]
    assert all(0.0 <= float(r["probability"]) <= 1.0 and r["class"] in "01" for r in rows)


def test_a_refused_resume_leaves_the_saved_configuration_untouched(trained_copy):
    with open("model/hyperparameters.yaml", encoding="utf-8") as stream:
        saved = stream.read()
    refused = run_cli(*trained_copy.argv, "--width", "12", "--train_steps", "6")
    assert refused.returncode == 2, refused.stderr
    line = one_line(refused.stderr)
    # Named by what changed, from the folder's saved configuration, with the way out.
    assert "its checkpoints do not restore into this model" in line
    assert "(width: 8 -> 12)" in line and "train into a new model_dir" in line
    assert "skipping checkpoint" not in refused.stdout  # no low-level lines before it
    with open("model/hyperparameters.yaml", encoding="utf-8") as stream:
        assert stream.read() == saved
    assert not os.path.exists(os.path.join("model", CHANGES_FILE))
    # A plain resume reports nothing about a configuration that never trained.
    again = run_cli(*trained_copy.argv)
    assert again.returncode == 0 and "configuration changed" not in again.stdout
    assert "already trained to step 4" in again.stdout


def test_a_kill_between_a_checkpoint_and_its_evaluation_is_made_good(trained_copy):
    # As if killed after saving ckpt-4 and before evaluating it: its run state says every
    # recorder got step 2, and there is no row for step 4 yet.
    rows = metrics_log.read_metrics("model")
    assert [r["step"] for r in rows] == [2, 4]
    state = run_state.read(os.path.join("model", "ckpt-4"))
    assert set(state["delivered"].values()) == {4}
    delivered = dict.fromkeys(state["delivered"], 2)
    run_state.write(os.path.join("model", "ckpt-4"), dict(state, delivered=delivered))
    with open(os.path.join("model", metrics_log.METRICS_FILE), "w") as stream:
        stream.write(json.dumps(rows[0]) + "\n")
    result = run_cli(*trained_copy.argv)
    assert result.returncode == 0, result.stderr
    assert "step 4 was saved but not every recorder got its evaluation" in result.stdout
    assert "already trained to step 4" in result.stdout
    again = metrics_log.read_metrics("model")
    assert [r["step"] for r in again] == [2, 4]  # every evaluation step, exactly once
    assert again[1]["eval_loss"] == pytest.approx(rows[1]["eval_loss"], rel=1e-5)
    assert again[1]["train_loss"] == pytest.approx(rows[1]["train_loss"], rel=1e-5)
    assert again[1]["learning_rate"] == pytest.approx(rows[1]["learning_rate"])


def test_provenance_records_commit_versions_and_data_and_reports_changes(trained_copy):
    first = read_json(os.path.join("model", "provenance.json"))["starts"][0]
    assert first["versions"]["tensorflow"] == tf.__version__ and first["step"] == 0
    assert first["git"]["commit"] is None or len(first["git"]["commit"]) == 40
    records = trained_copy.records
    manifest = os.path.join(records, "train.manifest.json")
    assert set(first["data"]) == {manifest, os.path.join(records, "eval.manifest.json")}
    assert len(first["data"][manifest]) == 64  # a sha256
    # The training data changes under the run: the resume says which file.
    with open(manifest, encoding="utf-8") as stream:
        saved = stream.read()
    try:
        with open(manifest, "w", encoding="utf-8") as stream:
            stream.write(saved.replace('"created"', '"made"'))
        result = run_cli(*trained_copy.argv, "--mode", "train", "--train_steps", "5")
    finally:
        with open(manifest, "w", encoding="utf-8") as stream:
            stream.write(saved)
    assert result.returncode == 0, result.stderr
    assert f"note: training data changed: {manifest} changed since the last start" in result.stdout


def test_a_resume_from_an_older_checkpoint_evaluates_what_follows_it_once(trained_copy):
    """The newest checkpoint is damaged: the run resumes from the one before and evaluates
    again the steps after it, each once in metrics.jsonl."""
    import glob

    (data,) = glob.glob(os.path.join("model", "ckpt-4.data-*"))
    with open(data, "r+b") as stream:
        stream.truncate(os.path.getsize(data) // 3)
    result = run_cli(*trained_copy.argv)
    assert result.returncode == 0, result.stderr
    assert "skipping checkpoint model/ckpt-4" in result.stdout
    assert "at step 2" in result.stdout
    assert [r["step"] for r in metrics_log.read_metrics("model")] == [2, 4]


def test_runs_line_up_in_tensorboards_hparams_dashboard(trained):
    """The trained run's HParams session and best metric, read back as TensorBoard's HParams
    plugin reads them (an event multiplexer over the folder)."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(trained.folder)
    multiplexer.Reload()
    sessions = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    (run,) = [r for r, tags in sessions.items() if metadata.SESSION_START_INFO_TAG in tags]
    content = sessions[run][metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    hparams = {k: v.ListFields()[0][1] for k, v in info.hparams.items()}
    assert hparams["width"] == 8 and hparams["image_size"] == 16
    assert hparams["encoder"] == "conv" and hparams["train_batch_size"] == 8
    assert json.loads(hparams["class_names"]) == ["horizontal", "vertical"]
    best = read_json(os.path.join(trained.best_dir, "best.json"))
    eval_run = os.path.join(run, "eval") if run != "." else "eval"
    events = [
        (event.step, float(tf.make_ndarray(event.tensor_proto)))
        for event in multiplexer.Tensors(eval_run, "best/loss")
    ]
    assert events[-1] == (best["step"], pytest.approx(best["value"]))
