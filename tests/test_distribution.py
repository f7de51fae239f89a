"""Data-parallel training and mixed precision (acrloss.distribution, issue 16).

Simulated devices must exist before the backend starts, so each training run is a child
process (``distributed_run.py``: the real ``Train`` with a 32-px Conv-BN model on 40
synthetic faces, batch 8, 4 steps an epoch): JAX with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``, TensorFlow with two logical CPUs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from acrloss.checkpoint import read_checkpoint
from acrloss.config import TrainConfig
from acrloss.distribution import DataParallel, parse_devices, precision_policy, scaled_learning_rate

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EPOCHS = 5  # x 4 steps = 20 steps
HAS_JAX = importlib.util.find_spec("jax") is not None


# -- settings and rules (in process) ----------------------------------------------------------
def test_devices_and_precision_are_validated():
    assert parse_devices("auto") == "auto" and parse_devices("2") == 2 and parse_devices(3) == 3
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ValueError, match="devices must be"):
            parse_devices(bad)
    with pytest.raises(ValueError, match="devices must be"):
        TrainConfig(devices=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="float16")
    assert TrainConfig(devices="4").devices == 4


def test_more_devices_than_the_backend_has_is_refused_naming_them():
    have = len(DataParallel("auto").devices)
    with pytest.raises(ValueError, match=rf"devices={have + 1}: the \w+ backend has {have} device"):
        DataParallel(have + 1)


def test_one_device_is_the_plain_path_and_the_batch_rule():
    dp = DataParallel(1)
    assert dp.num_replicas == 1 and dp.engine is None
    assert dp.check_batch(7) == 7
    assert scaled_learning_rate(1e-3, 32, 128) == pytest.approx(4e-3)
    with pytest.raises(ValueError):
        scaled_learning_rate(1e-3, 0, 32)


def test_mixed_precision_keeps_loss_and_metric_in_float32():
    from acrloss.losses import get_loss
    from acrloss.metrics import NMEMetric

    before = keras.config.dtype_policy().name
    with precision_policy("mixed_bfloat16"):
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(4, 3)(inputs)
        outputs = keras.layers.Dense(136)(keras.layers.GlobalAveragePooling2D()(x))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss=get_loss("l2", 136), metrics=[NMEMetric(68, (36, 45))])
        assert model.layers[-1].compute_dtype == "bfloat16" and model.layers[-1].kernel.dtype == "float32"
        out = model(np.zeros((2, 16, 16, 3), np.float32))
        assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
        logs = model.train_on_batch(np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32),
                                    np.random.default_rng(1).uniform(-0.3, 0.3, (4, 136)).astype(np.float32),
                                    return_dict=True)
        assert model.loss.dtype == "float32" and model.metrics[-1].dtype == "float32"
        assert all(np.isfinite(v) for v in logs.values())
    assert keras.config.dtype_policy().name == before


# -- training on simulated devices (child processes) ---------------------------------------
@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    sys.path.insert(0, str(HERE / "reliability"))
    from tiny_run import make_faces

    return make_faces(tmp_path_factory.mktemp("faces"), n=40)


def child_env(backend: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACRLOSS_FAULT")}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", ACRLOSS_QUIET="1", KERAS_BACKEND=backend,
               XLA_FLAGS="--xla_force_host_platform_device_count=2", ACRLOSS_TF_CPUS="2")
    env.update(extra)
    return env


def run(backend: str, faces: Path, save: Path, devices: int, *flags: str, epochs: int = EPOCHS, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "distributed_run.py"), str(faces), str(save), str(epochs), str(devices),
                           *flags], env=child_env(backend, **env), capture_output=True, text=True, timeout=600)


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])


BACKENDS = [pytest.param("jax", marks=pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")), "tensorflow"]


@pytest.fixture(scope="module", params=BACKENDS)
def runs(request, faces, tmp_path_factory):
    """One backend's 1-device and 2-device runs of the same global batch and seed."""
    backend = request.param
    root = tmp_path_factory.mktemp(backend)
    one = summary_of(run(backend, faces, root / "one", 1))
    two = summary_of(run(backend, faces, root / "two", 2))
    return backend, root, one, two


@pytest.mark.slow
def test_two_devices_match_one_device(runs):
    backend, root, one, two = runs
    assert one["distribution"]["replicas"] == 1
    assert two["distribution"] == {**two["distribution"], "backend": backend, "replicas": 2}
    assert two["distribution"]["engine"] == ("DataParallel" if backend == "jax" else "MirroredStrategy")
    loss1, loss2 = np.array(one["history"]["loss"]), np.array(two["history"]["loss"])
    assert len(loss1) == len(loss2) == EPOCHS
    np.testing.assert_allclose(loss2, loss1, rtol=1e-3)  # every epoch, the last one ending at step 20
    np.testing.assert_allclose(two["history"]["val_nme"], one["history"]["val_nme"], rtol=1e-3)
    w1 = read_checkpoint(root / "one" / "checkpoint.npz").model_values
    w2 = read_checkpoint(root / "two" / "checkpoint.npz").model_values
    assert len(w1) == len(w2)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)
    assert json.loads((root / "two" / "config.json").read_text())["devices"] == 2


@pytest.mark.slow
def test_two_device_run_killed_then_resumed_continues_at_the_right_step(runs, faces):
    backend, root, _, two = runs
    save = root / "killed"
    killed = run(backend, faces, save, 2, ACRLOSS_FAULT="committed@2")  # SIGKILL right after epoch 2's checkpoint
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert read_checkpoint(save / "checkpoint.npz").epoch == 2
    resumed = summary_of(run(backend, faces, save, 2, "--resume"))
    assert resumed["distribution"]["replicas"] == 2
    assert len(resumed["history"]["loss"]) == EPOCHS - 2  # epochs 3..5 only: steps 9..20
    np.testing.assert_allclose(resumed["history"]["loss"], two["history"]["loss"][2:], rtol=1e-6)
    state, ref = read_checkpoint(save / "checkpoint.npz"), read_checkpoint(root / "two" / "checkpoint.npz")
    assert state.epoch == EPOCHS and [r["loss"] for r in state.log] == [r["loss"] for r in ref.log]
    for a, b in zip(state.model_values + state.optimizer_values, ref.model_values + ref.optimizer_values):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
def test_mixed_precision_on_two_devices_trains(faces, tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "distributed_run.py"), str(faces), str(tmp_path / "run"), "2", "2",
                           "--precision", "mixed_bfloat16"], env=child_env("jax"), capture_output=True, text=True, timeout=600)
    summary = summary_of(proc)
    assert summary["distribution"]["replicas"] == 2
    assert all(np.isfinite(summary["history"]["loss"])) and all(np.isfinite(summary["history"]["val_nme"]))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "mixed_bfloat16"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
def test_two_jax_processes_on_one_machine_match_one_device(faces, tmp_path):
    """Multi-host as documented (docs/distributed.md): two processes of one CPU device each
    join through ``KERAS_DISTRIBUTION_*`` (jax.distributed.initialize) and each feeds its half
    of every global batch; the run is the 1-device run."""
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, str(HERE / "distributed_run.py"), str(faces), str(tmp_path / f"host{i}"),
                               str(EPOCHS), "auto"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=child_env("jax", XLA_FLAGS="--xla_force_host_platform_device_count=1",
                                            KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(i),
                                            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port},localhost:{port + 1}"))
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    one = summary_of(run("jax", faces, tmp_path / "one", 1))
    for proc, (out, err) in zip(procs, outs):
        summary = summary_of(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        assert summary["distribution"]["replicas"] == 2
        np.testing.assert_allclose(summary["history"]["loss"], one["history"]["loss"], rtol=1e-3)


# -- TensorFlow multi-worker (MultiWorkerMirroredStrategy through TF_CONFIG) ----------------
def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def test_malformed_tf_config_is_refused_naming_the_problem():
    from acrloss.distribution import tf_cluster

    assert tf_cluster("") == (0, 1)
    assert tf_cluster(tf_config([1, 2, 3], 2)) == (2, 3)
    chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    assert tf_cluster(json.dumps(chief)) == (1, 2)  # the chief is task 0
    for bad, match in [("{cluster", "not valid JSON"), ("[]", 'needs a "cluster" object'),
                       ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', r"job\(s\) \['ps'\]"),
                       ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses'),
                       ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses'),
                       ('{"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', "at most one chief"),
                       ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "lists no worker"),
                       (tf_config([1, 2], 2), "is not one of the cluster's tasks"),
                       ('{"cluster": {"worker": ["a:1", "b:2"]}}', "is not one of the cluster's tasks")]:
        with pytest.raises(ValueError, match=match):
            tf_cluster(bad)


def test_a_worker_block_is_split_evenly_over_its_devices():
    import tensorflow as tf

    from acrloss.distribution import _split_batches

    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)  # 2 batches of 4 rows
    batches = tf.data.Dataset.from_tensor_slices((x, {"y": x[..., 0]}))
    got = list(_split_batches(batches, 2).as_numpy_iterator())
    assert len(got) == 4
    for k, (part, targets) in enumerate(got):
        np.testing.assert_array_equal(part, x[k // 2, 2 * (k % 2): 2 * (k % 2) + 2])
        np.testing.assert_array_equal(targets["y"], part[:, 0])
    assert len(list(_split_batches(batches, 1))) == 2


TF_WORKER_EPOCHS = 3  # x 4 steps


@pytest.mark.slow
def test_two_tf_workers_on_one_machine_match_one_device(faces, tmp_path):
    """Multi-worker TensorFlow as documented (docs/distributed.md): two processes of one CPU
    device each, one TF_CONFIG each (localhost ports), the same --save-path; each feeds its
    half of every global batch. Both are killed right after epoch 1's checkpoint; a resume where
    worker 1 cannot see the chief's folder is refused by both; then both resume (the non-chief
    worker reads the chief's checkpoint): the losses are those of the 1-device run, only the
    chief wrote the run folder, the other worker's scratch folder is gone."""
    import socket

    socks = [socket.socket() for _ in range(2)]
    for sock in socks:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    save = tmp_path / "run"

    def workers(phase: str, *flags: str, elsewhere: bool = False, **env: str) -> list[subprocess.CompletedProcess]:
        scratch = tmp_path / f"tmp_{phase}"
        scratch.mkdir()
        procs = [subprocess.Popen([sys.executable, str(HERE / "distributed_run.py"), str(faces),
                                   str(tmp_path / "elsewhere" if elsewhere and i else save),
                                   str(TF_WORKER_EPOCHS), "auto", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=child_env("tensorflow", ACRLOSS_TF_CPUS="1", TMPDIR=str(scratch),
                                                           TF_CONFIG=tf_config(ports, i), **env))
                 for i in range(2)]
        try:  # (a worker whose peer never comes waits for it: kill both rather than leave them behind)
            outs = [p.communicate(timeout=600) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outs)]

    killed = workers("killed", ACRLOSS_FAULT="committed@1")  # each SIGKILLed right after epoch 1's checkpoint
    assert [p.returncode for p in killed] == [-signal.SIGKILL] * 2, killed[0].stderr[-2000:] + killed[1].stderr[-2000:]
    assert read_checkpoint(save / "checkpoint.npz").epoch == 1
    lost = workers("lost", "--resume", elsewhere=True)  # worker 1 cannot see the chief's folder: both stop, no hang
    for proc in lost:
        assert proc.returncode == 1 and "the workers would start at different epochs (worker 0: epoch 1, " \
            "worker 1: epoch 0)" in proc.stderr, proc.stderr[-2000:]
    resumed = [summary_of(p) for p in workers("resumed", "--resume")]
    one = summary_of(run("tensorflow", faces, tmp_path / "one", 1, epochs=TF_WORKER_EPOCHS, ACRLOSS_TF_CPUS="1"))
    for summary in resumed:
        assert summary["distribution"]["replicas"] == 2 and summary["distribution"]["engine"] == "MultiWorkerMirroredStrategy"
        assert len(summary["history"]["loss"]) == TF_WORKER_EPOCHS - 1  # epochs 2..3
        np.testing.assert_allclose(summary["history"]["loss"], one["history"]["loss"][1:], rtol=1e-3)
        np.testing.assert_allclose(summary["history"]["val_nme"], one["history"]["val_nme"][1:], rtol=1e-3)
    state = read_checkpoint(save / "checkpoint.npz")
    assert state.epoch == TF_WORKER_EPOCHS
    for key in ("loss", "val_nme"):  # epoch 1 from before the kill
        np.testing.assert_allclose([r[key] for r in state.log], one["history"][key], rtol=1e-3)
    for a, b in zip(state.model_values, read_checkpoint(tmp_path / "one" / "checkpoint.npz").model_values):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert sorted(p.name for p in save.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not list((tmp_path / "tmp_resumed").iterdir())  # worker 1's scratch folder was removed
