"""Scale: two MultiWorkerMirrored workers on loopback, the tf.data service, mixed precision
and profiling, through run.py and the library as a user runs them."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_script

# A worker as run.py starts it, which also prints a digest of the weights it trained.
WORKER = r"""
import json, sys
sys.path.insert(0, {root!r})
import run
from library.cli import main
from project import hyperparameters

built = []

def load_project():
    project = run.load_project()
    model_fn = project["model_fn"]

    def recording_model_fn(params):
        built.append(model_fn(params))
        return built[-1]

    return {{**project, "model_fn": recording_model_fn}}

status = main(sys.argv[1:], hyperparameters, load_project)
if status == 0:  # the first model built is the one that trains
    print("WEIGHTS " + json.dumps([w.numpy().astype(float).ravel()[:4].tolist() for w in built[0].weights]))
sys.exit(status)
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        for s in sockets:
            stack.enter_context(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class Cluster:
    """Two workers of one run.py command on loopback ports, each with its TF_CONFIG; every
    process is killed when the block ends, however it ends."""

    def __init__(self, work, argv):
        self.work, self.argv, self.processes = work, argv, []

    def start(self, name):
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
        self.processes, self.logs = [], []
        for index in range(2):
            task = {"type": "worker", "index": index}
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": task}))
            log = open(os.path.join(self.work, f"{name}-{index}.log"), "w+")  # noqa: SIM115
            command = [sys.executable, "-c", WORKER.format(root=ROOT), *self.argv]
            self.processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            )
            self.logs.append(log)
        return self

    def wait(self, timeout=300):
        deadline = time.time() + timeout
        for process in self.processes:
            process.wait(timeout=max(1, deadline - time.time()))
        return [p.returncode for p in self.processes]

    def output(self, index):
        self.logs[index].seek(0)
        return self.logs[index].read()

    def kill(self):
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def smoke_argv(records, tmp_path, *extra):
    return [
        "--config_set", "smoke", "--distribution", "multi_worker", "--progress", "log",
        "--train_files", str(records / "train-*.tfrecord"),
        "--eval_files", str(records / "eval-*.tfrecord"),
        "--model_dir", str(tmp_path / "model"), "--best_model_dir", str(tmp_path / "best"),
        "--collective_timeout_secs", "60", *extra,
    ]  # fmt: skip


def weights_of(output):
    lines = [line for line in output.splitlines() if line.startswith("WEIGHTS ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("WEIGHTS ") :])


def test_two_workers_train_as_one_and_resume_after_both_are_killed(stripes_records, tmp_path):
    from library import checkpoints, summaries

    model_dir = str(tmp_path / "model")
    argv = smoke_argv(
        stripes_records, tmp_path,
        "--train_steps", "24", "--save_checkpoints_steps", "4", "--steps_between_evals", "12",
    )  # fmt: skip
    with Cluster(str(tmp_path), argv) as cluster:
        cluster.start("first")
        wait_for(lambda: checkpoints.numbered_checkpoints(model_dir), 240, "a first checkpoint")
        cluster.kill()  # both, as a lost job or a power cut would
        killed_at = checkpoints.numbered_checkpoints(model_dir)[0][0]
        assert 4 <= killed_at < 24, cluster.output(0)[-2000:]
        assert cluster.start("again").wait() == [0, 0], cluster.output(0)[-3000:]
        outputs = [cluster.output(0), cluster.output(1)]
    # Both resumed from the chief's newest checkpoint, at the same step.
    resumed_at = {int(re.search(r"resuming from \S+ at step (\d+)", o).group(1)) for o in outputs}
    assert len(resumed_at) == 1 and resumed_at.pop() >= killed_at, resumed_at
    # One model on both workers: the same weights, bit for bit.
    assert weights_of(outputs[0]) == weights_of(outputs[1])
    # One set of outputs, the chief's; the other worker left nothing behind.
    assert checkpoints.numbered_checkpoints(model_dir)[0][0] == 24
    assert not [n for n in os.listdir(model_dir) if n.startswith(".workertemp")]
    assert [r["step"] for r in summaries.read_metrics(model_dir)][-1] == 24
    assert len({r["step"] for r in summaries.read_metrics(model_dir)}) == len(
        summaries.read_metrics(model_dir)
    )
    best = json.loads((tmp_path / "best" / "best.json").read_text())
    assert best["saved_model_step"] == best["step"]
    assert (tmp_path / "best" / "saved_model" / "saved_model.pb").exists()


def test_a_worker_that_dies_stops_the_other_with_one_line(stripes_records, tmp_path):
    from library import checkpoints

    model_dir = str(tmp_path / "model")
    argv = smoke_argv(
        stripes_records, tmp_path,
        "--train_steps", "100000", "--save_checkpoints_steps", "4", "--steps_between_evals",
        "100000", "--collective_timeout_secs", "20",
    )  # fmt: skip
    with Cluster(str(tmp_path), argv) as cluster:
        cluster.start("run")
        wait_for(lambda: checkpoints.numbered_checkpoints(model_dir), 240, "a first checkpoint")
        cluster.processes[1].send_signal(signal.SIGKILL)
        started = time.time()
        cluster.processes[0].wait(timeout=120)
        stopped_after = time.time() - started
        output = cluster.output(0)
    assert cluster.processes[0].returncode == 1, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert re.match(r"run\.py: error: /job:worker/(replica:0/)?task:1 stopped answering", last), (
        last
    )
    assert f"resume from the last checkpoint in {model_dir}" in last
    assert "Traceback" not in output
    assert stopped_after < 60


def test_multi_worker_without_tf_config_is_one_line(stripes_records, tmp_path):
    env_before = os.environ.pop("TF_CONFIG", None)
    try:
        result = run_script("run.py", *smoke_argv(stripes_records, tmp_path), timeout=60)
    finally:
        if env_before is not None:
            os.environ["TF_CONFIG"] = env_before
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].endswith('"task": {"type": "worker", "index": 0}}')
    ), result.stderr
    assert "distribution multi_worker needs TF_CONFIG" in result.stderr
    assert "Traceback" not in result.stderr


@contextlib.contextmanager
def servers(*commands):
    """Processes started as a user starts them, killed by PID at the end."""
    processes = []
    try:
        for argv, env, log in commands:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "library.data_service", *argv],
                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT,
                )
            )  # fmt: skip
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_training_from_a_tf_data_service_dispatcher_and_worker(stripes_records, tmp_path):
    from library import checkpoints

    dispatcher_port, worker_port = free_ports(2)
    logs = [open(tmp_path / f"{name}.log", "w+") for name in ("dispatcher", "worker")]  # noqa: SIM115
    dispatcher = (["dispatcher", "--port", str(dispatcher_port)], {}, logs[0])
    worker = (
        ["worker", "--port", str(worker_port), "--dispatcher_address", f"localhost:{dispatcher_port}"],
        {"TF_CPP_MIN_LOG_LEVEL": "0"},  # the worker's own log says what it read
        logs[1],
    )  # fmt: skip

    def said(log, text):
        log.seek(0)
        return text in log.read()

    with servers(dispatcher) as started:
        wait_for(lambda: said(logs[0], "dispatcher listening on"), 120, "the dispatcher")
        with servers(worker):
            wait_for(lambda: said(logs[1], "worker listening on"), 120, "the worker")
            address = f"grpc://localhost:{dispatcher_port}"
            result = run_script(
                "run.py", "--config_set", "smoke", "--progress", "log",
                "--train_files", str(stripes_records / "train-*.tfrecord"),
                "--eval_files", str(stripes_records / "eval-*.tfrecord"),
                "--model_dir", str(tmp_path / "model"), "--best_model_dir", str(tmp_path / "best"),
                "--data_service_address", address,
            )  # fmt: skip
        assert started[0].poll() is None  # servers run until stopped
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"training input from the tf.data service at {address}" in result.stdout
    assert checkpoints.numbered_checkpoints(str(tmp_path / "model"))[0][0] == 4
    assert said(logs[1], "tf_record_dataset_op"), "the service worker read no TFRecords"


def test_a_data_service_address_where_nothing_answers_is_one_line(stripes_records, tmp_path):
    (port,) = free_ports(1)
    started = time.time()
    result = run_script(
        "run.py", "--config_set", "smoke",
        "--train_files", str(stripes_records / "train-*.tfrecord"),
        "--eval_files", str(stripes_records / "eval-*.tfrecord"),
        "--model_dir", str(tmp_path / "model"),
        "--data_service_address", f"grpc://localhost:{port}",
    )  # fmt: skip
    assert result.returncode == 2 and time.time() - started < 120
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"run.py: error: data_service_address grpc://localhost:{port}: nothing")
    assert "python -m library.data_service dispatcher" in last
    assert "Traceback" not in result.stderr
    malformed = run_script("run.py", "--config_set", "smoke", "--data_service_address", "localhost")
    assert malformed.returncode == 2
    assert "data_service_address must be grpc://HOST:PORT" in malformed.stderr


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_in_16_bits_and_restores_into_float32(
    policy, stripes_records, tmp_path
):
    import keras
    import tensorflow as tf
    from test_engine import PROJECT, make_params, read_json, specs

    from library import commands, schedule, summaries
    from library.contract import Functions
    from library.estimator import train_and_evaluate

    built = []

    def recording_model_fn(params):
        built.append(PROJECT["model_fn"](params))
        return built[-1]

    params = make_params(stripes_records, tmp_path, mixed_precision=policy)
    functions = Functions.from_mapping({**PROJECT, "model_fn": recording_model_fn})
    estimator = commands.build_estimator(params, functions, schedule.make_plan(params, 48))
    train, evaluation = specs(params, 4)
    assert train_and_evaluate(estimator, train, evaluation) == 4
    model = built[0]  # the model that trained
    convolution = next(x for x in model.layers if isinstance(x, keras.layers.Conv2D))
    assert convolution.compute_dtype == policy.removeprefix("mixed_")
    assert model.get_layer("logits").compute_dtype == "float32"
    assert {v.dtype for v in model.weights} == {"float32"}
    latest = tf.train.latest_checkpoint(params.model_dir)
    names = [name for name, _ in tf.train.list_variables(latest)]
    assert any(n.startswith("loss_scale/") for n in names) == (policy == "mixed_float16")
    # In float32, the best checkpoint evaluates as the mixed-precision run evaluated it.
    float32 = params.replace(mixed_precision="none")
    estimator = commands.build_estimator(
        float32, Functions.from_mapping(PROJECT), schedule.make_plan(float32, 48)
    )
    results = estimator.evaluate(evaluation.input_fn, checkpoint="best")
    best = read_json(tmp_path / "best" / "best.json")
    recorded = next(
        r for r in summaries.read_metrics(params.model_dir) if r["step"] == best["step"]
    )
    # bfloat16 keeps 8 bits of mantissa: an example on the decision boundary may flip.
    assert abs(results["accuracy"] - recorded["eval_accuracy"]) <= 1 / 16 + 1e-6
    assert results["loss"] == pytest.approx(best["value"], rel=0.05, abs=0.02)
    # And training resumes in float32 from the mixed-precision checkpoint.
    assert estimator.train(train.input_fn, 6) == 6


def test_profile_steps_write_a_tensorboard_profile(stripes_records, tmp_path):
    from test_engine import make_estimator, make_params, specs

    from library.estimator import train_and_evaluate

    # With early stopping too (no improvement counts: it stops after the second evaluation),
    # which must still be able to stop the run.
    params = make_params(
        stripes_records, tmp_path, profile_steps=[2, 4], train_steps=6,
        early_stopping_patience=1, early_stopping_min_delta=100.0,
    )  # fmt: skip
    lines = []
    estimator = make_estimator(params)
    estimator.say = lines.append
    train, evaluation = specs(params, 6)
    assert train_and_evaluate(estimator, train, evaluation) == 4
    profile = os.path.join(params.model_dir, "profile")
    assert f"profiling steps 3-4 into {profile}" in lines
    assert any(line.startswith(f"profile written to {profile}") for line in lines)
    traces = [
        os.path.join(folder, name)
        for folder, _, names in os.walk(os.path.join(profile, "plugins", "profile"))
        for name in names
        if name.endswith(".xplane.pb")
    ]
    assert traces and all(os.path.getsize(t) > 0 for t in traces), traces


def test_scale_settings_are_checked_before_tensorflow_loads(tmp_path):
    cases = [
        (["--profile_steps", "[4, 2]"], {}, "profile_steps must be [start, stop] with start < stop"),
        (["--distribution", "multi_worker"], {"TF_CONFIG": '{"cluster": {}}'},
         "TF_CONFIG must name the cluster and this task in it"),
        (["--distribution", "multi_worker"], {"TF_CONFIG": '{"cluster": {"worker": ["h:1"]}, '
         '"task": {"type": "worker", "index": 3}}'}, "TF_CONFIG must name the cluster"),
        (["--mixed_precision", "float16"], {}, "mixed_float16"),
        (["--data_service_address", "grpc://h:1", "--checkpoint_input_pipeline", "true"], {},
         "the tf.data service holds the input pipeline"),
    ]  # fmt: skip
    for argv, env, message in cases:
        started = time.time()
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "run.py"), "--config_set", "smoke", *argv],
            capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, (argv, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert time.time() - started < 30
