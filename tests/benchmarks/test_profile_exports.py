"""benchmarks/profile_exports.py on a tiny exported model: op counts come from the file,
timings are positive and the reference-kernel run is really a different interpreter."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
if keras.backend.backend() != "tensorflow":  # pragma: no cover
    pytest.skip("export needs the TensorFlow backend", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]


def test_profile_reports_ops_and_timings_of_the_file(tmp_path):
    from acrloss.export import tflite_bytes

    spec = importlib.util.spec_from_file_location("profile_exports", REPO / "benchmarks" / "profile_exports.py")
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tflite_bytes(model))
    res = prof.main(["--json", str(tmp_path / "p.json"), str(path), "--rounds", "2"])
    got = res["files"][str(path)]
    assert got["ops"].get("CONV_2D") == 1 and got["ops"].get("FULLY_CONNECTED") == 1, got["ops"]
    assert got["num_ops"] == sum(got["ops"].values())
    for key in ("invoke_ms", "call_ms", "no_xnnpack_ms"):
        assert np.isfinite(got[key]) and got[key] > 0, (key, got)
    assert (tmp_path / "p.json").is_file() and "cascade" not in res
