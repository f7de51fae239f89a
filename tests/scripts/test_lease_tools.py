"""scripts/shrink_landmark_folder.py and scripts/lease_train.py: the tools that carry training
to a borrowed GPU machine (compact faces there, several runs fitted to one deadline, models
back without their optimizer state)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shrunk_points_stay_on_the_shrunk_image(tmp_path):
    """Bright discs at known sub-pixel centres: after shrinking, each disc's intensity centroid
    lies on its rescaled point (pixel-centre convention) within 0.15 px."""
    from acrloss.data_prep.formats import read_pts, write_pts

    src = tmp_path / "src" / "sub"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    h, w, upsample = 300, 400, 8
    points = np.stack([rng.uniform(40, w - 40, 68), rng.uniform(40, h - 40, 68)], 1)
    points[:, 0] = 40 + (np.arange(68) % 12) * 29 + rng.uniform(-3, 3, 68)  # a grid: discs never touch
    points[:, 1] = 40 + (np.arange(68) // 12) * 40 + rng.uniform(-3, 3, 68)
    big = np.zeros((h * upsample, w * upsample), np.uint8)
    for x, y in points:  # drawn 8x finer and averaged down: sub-pixel centres
        cv2.circle(big, (int(round((x + 0.5) * upsample - 0.5)), int(round((y + 0.5) * upsample - 0.5))), 6 * upsample, 255, -1)
    image = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(src / "face.png"), image)
    write_pts(src / "face.pts", points)

    shrink = _module("shrink_landmark_folder")
    shrink.main([str(tmp_path / "src"), str(tmp_path / "dst"), "--max-side", "160", "--quality", "100"])
    small = cv2.imread(str(tmp_path / "dst" / "sub" / "face.jpg"), cv2.IMREAD_UNCHANGED)
    assert small.shape == (120, 160)  # greyscale stays single-channel; longer side 160
    got = read_pts(tmp_path / "dst" / "sub" / "face.pts")
    np.testing.assert_allclose(got, (points + 0.5) * 0.4 - 0.5, atol=1e-4)
    ys, xs = np.mgrid[0:120, 0:160]
    weights = small.astype(np.float64)
    for x, y in got:
        window = (np.abs(xs - x) <= 4) & (np.abs(ys - y) <= 4)
        wsum = weights[window].sum()
        centroid = np.array([(weights * xs)[window].sum(), (weights * ys)[window].sum()]) / wsum
        assert np.abs(centroid - [x, y]).max() < 0.15, (centroid, (x, y))


def test_strip_optimizer_keeps_the_model_and_drops_its_optimizer(tmp_path):
    import h5py
    import keras

    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Dense(16, activation="relu")(inputs)))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    model.fit(x, np.zeros((32, 4), "float32"), epochs=1, verbose=0)
    model.save(str(tmp_path / "full.h5"))
    _module("lease_train").strip_optimizer(tmp_path / "full.h5", tmp_path / "lean.h5")
    with h5py.File(tmp_path / "full.h5", "r") as f:
        assert "optimizer_weights" in f
    with h5py.File(tmp_path / "lean.h5", "r") as f:
        assert "optimizer_weights" not in f and "training_config" not in f.attrs
    lean = keras.saving.load_model(str(tmp_path / "lean.h5"), compile=False)
    np.testing.assert_array_equal(lean.predict(x, verbose=0), model.predict(x, verbose=0))


FAKE_TRAIN = textwrap.dedent('''
    """Stands in for train.py: one log.csv row per 0.4 s, resumable, a best.h5 at each row."""
    import sys, time
    from pathlib import Path
    import h5py
    argv = sys.argv[1:]
    epochs, save = int(argv[argv.index("--epochs") + 1]), Path(argv[argv.index("--save-path") + 1])
    save.mkdir(parents=True, exist_ok=True)
    log = save / "log.csv"
    if "--overwrite" in argv or not log.exists():
        log.write_text("epoch,loss\\n")
    with open(save / "calls.txt", "a") as fh:
        fh.write(" ".join(argv[argv.index("--epochs"):]) + "\\n")
    time.sleep(0.5)  # start-up
    done = len(log.read_text().splitlines()) - 1
    for epoch in range(done, epochs):
        time.sleep(0.4)
        with h5py.File(save / "best.h5", "w") as f:
            f.create_group("model_weights").attrs["epoch"] = epoch
            f.create_group("optimizer_weights")
        with open(log, "a") as fh:
            fh.write(f"{epoch},1.0\\n")
    (save / "summary.json").write_text("{}")
''')


def test_lease_train_fits_long_runs_to_the_deadline_and_leaves_short_ones(tmp_path):
    """A 1000-epoch run is refitted (resumed with fewer epochs) and finishes before the
    deadline; a 5-epoch run (under the 9-epoch floor of a refit) is left alone."""
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"common": ["--data-dir", "x"], "runs": [
        {"name": "long", "epochs": 1000, "args": ["--split", "a"]},
        {"name": "fam/short", "epochs": 5, "args": []}]}))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "lease_train.py"), str(plan), "--runs", str(tmp_path / "runs"),
                           "--out", str(out), "--deadline", "14", "--safety", "1.5", "--train", str(fake)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = {r["name"]: r for r in json.loads(proc.stdout)["runs"]}
    long, short = report["long"], report["fam/short"]
    # 0.4 s per epoch (x1.5 safety) in the ~12 s left after 3 calibration epochs: far fewer than 1000
    assert 9 <= long["epochs"] < 40 and long["finished"] and long["epochs_done"] == long["epochs"], long
    assert "refitted to" in long["note"]
    calls = (tmp_path / "runs" / "long" / "calls.txt").read_text().splitlines()
    assert calls == ["--epochs 1000 --save-path " + str(tmp_path / "runs" / "long") + " --overwrite",
                     f"--epochs {long['epochs']} --save-path " + str(tmp_path / "runs" / "long") + " --resume"]
    assert short["epochs"] == 5 and short["finished"] and "refitted to" not in short["note"] and "kept" not in short["note"]
    assert sorted(p.name for p in out.iterdir()) == ["fam_short.h5", "long.h5", "meta.tgz"]
    import h5py

    with h5py.File(out / "long.h5", "r") as f:
        assert "optimizer_weights" not in f and f["model_weights"].attrs["epoch"] == long["epochs"] - 1
    with tarfile.open(out / "meta.tgz") as tar:
        names = tar.getnames()
    assert "lease.json" in names and "long/log.csv" in names and "fam/short/log.csv" in names
