"""Kill drills for training checkpoints (issue 15, item 3).

A child training process (``tiny_run.py``: the real ``Train`` with a tiny model on
synthetic faces) is killed with a real ``SIGKILL`` inside an epoch's save, then resumed
with ``--resume``; repeated along one chain of kills, the run must end with exactly the
weights, optimizer state, ``best.h5`` and ``log.csv`` of an uninterrupted run of the same
seed, and with no temporary files left behind.

Kill points come from the ``ACRLOSS_FAULT`` hook of :mod:`acrloss.checkpoint`: either a
named instant of the save (every one of them is hit) or a random delay after the save began
(10 kills; the delays span the save durations measured on the uninterrupted run).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from acrloss.checkpoint import CHECKPOINT, SAVE_POINTS, latest_checkpoint, read_checkpoint

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EPOCHS = 12  # more epochs than kills in a chain, so a timed kill always lands before the run ends
KILLS = 10


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACRLOSS_FAULT")}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", ACRLOSS_QUIET="1", TF_NUM_INTRAOP_THREADS="1",
               TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1", KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    env.update(extra)
    return env


def run_child(data: Path, save: Path, *flags: str, epochs: int = EPOCHS, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "tiny_run.py"), str(data), str(save), str(epochs), *flags],
                          env=child_env(**env), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    sys.path.insert(0, str(HERE))
    from tiny_run import make_faces

    return make_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def reference(faces, tmp_path_factory):
    """The uninterrupted run, with the timing of every save point."""
    save = tmp_path_factory.mktemp("reference") / "run"
    trace = save.parent / "trace.txt"
    proc = run_child(faces, save, ACRLOSS_FAULT_TRACE=str(trace))
    assert proc.returncode == 0, proc.stderr[-3000:]
    durations = [float(line.split()[2]) for line in trace.read_text().splitlines() if line.split()[1] == "end"]
    return save, durations


def temp_files(save: Path) -> list[str]:
    return sorted(p.name for folder in (save, save / "pca") if folder.is_dir() for p in folder.iterdir()
                  if p.name.startswith("."))


def assert_same_run(save: Path, ref: Path) -> None:
    assert (save / "log.csv").read_bytes() == (ref / "log.csv").read_bytes()
    got, want = read_checkpoint(save / CHECKPOINT), read_checkpoint(ref / CHECKPOINT)
    assert got.epoch == want.epoch == EPOCHS
    assert got.log == want.log and got.best == want.best
    assert len(got.model_values) == len(want.model_values) and len(got.optimizer_values) == len(want.optimizer_values)
    for a, b in zip(got.model_values + got.optimizer_values, want.model_values + want.optimizer_values):
        np.testing.assert_array_equal(a, b)
    import h5py

    def h5_arrays(path: Path) -> dict[str, np.ndarray]:
        out = {}
        with h5py.File(path, "r") as f:
            f["model_weights"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out

    a, b = h5_arrays(save / "best.h5"), h5_arrays(ref / "best.h5")
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert json.loads((save / "best.h5.json").read_text()) == json.loads((ref / "best.h5.json").read_text())
    assert temp_files(save) == [], "temporary files left behind"


def kill_chain(faces: Path, save: Path, faults: list[str]) -> list[dict]:
    """Run, killing the child at each fault in turn (each aimed at the next save the
    process makes), then finish with a plain resume. Returns what each kill left."""
    seen = []
    for i, fault in enumerate(faults):
        state = latest_checkpoint(save, arrays=False) if save.is_dir() else None
        committed = state.epoch if state is not None else -1
        target = committed + 1
        point, _, rest = fault.partition("@")
        spec = f"{point}@{target}{rest}"
        proc = run_child(faces, save, *(["--resume"] if i else []), ACRLOSS_FAULT=spec)
        assert proc.returncode == -signal.SIGKILL, f"kill {i} ({spec}) did not happen: rc {proc.returncode}\n{proc.stderr[-3000:]}"
        seen.append({"fault": spec, "temp_files": temp_files(save)})
    proc = run_child(faces, save, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return seen


def test_kill_at_every_save_point_then_resume_gives_the_uninterrupted_run(faces, reference, tmp_path):
    ref, _ = reference
    # the initial checkpoint's points, then every point of an epoch's save; the chain walks
    # through the epochs as kills after the commit point advance it
    initial = [f"{p}" for p in ("begin", "tmp-written", "committed")]
    faults = initial + list(SAVE_POINTS[:-1])  # "end" is the same instant as the next epoch's training
    assert len(faults) >= KILLS
    save = tmp_path / "run"
    seen = kill_chain(faces, save, faults)
    # a kill between the temporary checkpoint and its rename leaves the temporary file; the resume removes it
    assert any(".checkpoint.npz." in " ".join(s["temp_files"]) for s in seen if s["fault"].startswith("tmp-written")), seen
    assert_same_run(save, ref)


def test_ten_kills_at_random_offsets_of_the_save_then_resume(faces, reference, tmp_path):
    ref, durations = reference
    longest = max(durations)
    rng = np.random.default_rng(int(os.environ.get("ACRLOSS_DRILL_SEED", "15")))
    delays = rng.uniform(0.0, 1.1 * longest, KILLS)
    save = tmp_path / "run"
    seen = kill_chain(faces, save, [f"delay@={d:.4f}" for d in delays])
    assert [s["fault"].split("=")[1] for s in seen] == [f"{d:.4f}" for d in delays]
    assert_same_run(save, ref)


def test_resume_of_a_finished_run_says_so_and_touches_nothing(faces, reference, tmp_path):
    ref, _ = reference
    import shutil

    save = tmp_path / "done"
    shutil.copytree(ref, save)
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in save.rglob("*") if p.is_file()}
    proc = run_child(faces, save, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already finished" in proc.stderr
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in save.rglob("*") if p.is_file()}
    assert after == before


def test_epochs_may_change_on_resume_only_while_the_schedule_so_far_is_the_same(faces, reference, tmp_path):
    """A run started for 30 epochs, killed after 3 (the warm-up and the first cosine epoch, at
    the first curriculum level under both counts), resumed with 12 epochs: exactly the
    uninterrupted 12-epoch run. Resumed with 4 epochs instead (epoch 2 would have had the
    second curriculum level), it is refused, naming the setting."""
    ref, _ = reference
    for name, epochs in (("longer", 30), ("refused", 30)):
        proc = run_child(faces, tmp_path / name, epochs=epochs, ACRLOSS_FAULT="end@3")
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        assert latest_checkpoint(tmp_path / name, arrays=False).epoch == 3
    proc = run_child(faces, tmp_path / "longer", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "with --epochs 12 (was 30)" in proc.stderr
    assert_same_run(tmp_path / "longer", ref)

    proc = run_child(faces, tmp_path / "refused", "--resume", epochs=4)
    assert proc.returncode != 0
    assert "other settings" in proc.stderr and "epochs: 30 -> 4" in proc.stderr, proc.stderr[-3000:]
