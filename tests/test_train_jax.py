"""Training end to end on the JAX backend: the data pipeline, losses, callbacks and the
`.h5` checkpoint need no TensorFlow code path."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_train_cli_runs_on_jax_backend(w300_dir, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "ACRLOSS_QUIET": "1"}
    cmd = [sys.executable, "-m", "acrloss.train", "--arch", "mnv2", "--alpha", "0.35", "--data-dir", str(w300_dir),
           "--loss", "acr", "--epochs", "2", "--input-size", "64", "--max-train-faces", "40", "--batch-size", "16",
           "--save-path", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["history"]["loss"]) == 2
    assert all(v == v for v in summary["history"]["loss"])  # no NaN
    assert (tmp_path / "run" / "best.h5").stat().st_size > 0
    assert not (tmp_path / "run" / "tensorboard").exists()  # TensorBoard is a TF-only extra
