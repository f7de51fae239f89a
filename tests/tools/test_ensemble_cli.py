"""``acrloss ensemble`` (acrloss.tools.ensemble): the checkpoint and its JSON, the margin
checks, and errors that leave nothing behind."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from acrloss.cli import main as cli_main
from acrloss.models import build_regressor, load_model
from acrloss.tools.ensemble import member_files
from tests.models.random_weights import randomize


def run_folder(root, name: str, seed: int, margin: float = 0.25, size: int = 32):
    """A training-run-like folder: ``best.h5`` and a ``config.json`` with its crop margin."""
    folder = root / name
    folder.mkdir()
    randomize(build_regressor("mnv2", 68, input_size=size, alpha=0.35), seed=seed).save(folder / "best.h5")
    (folder / "config.json").write_text(json.dumps({"arch": "mnv2", "crop": {"input_size": size, "margin": margin}}))
    return folder / "best.h5"


def test_writes_the_checkpoint_and_its_record(tmp_path, capsys):
    a, b = run_folder(tmp_path, "a", 1), run_folder(tmp_path, "b", 2, size=48)
    out = tmp_path / "ens.h5"
    assert cli_main(["ensemble", str(a), str(b), "--weights", "0.25", "0.75", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["ensemble"]["input_size"] == 48 and record["ensemble"]["margin"] == 0.25
    assert [m["weight"] for m in record["ensemble"]["members"]] == [0.25, 0.75]
    assert [m["file"] for m in record["ensemble"]["members"]] == ["a/best.h5", "b/best.h5"]  # relative: beside it
    assert record["ensemble"]["members"][0]["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert member_files(out.with_suffix(".json")) == [a, b]
    model = load_model(out)
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    want = np.asarray(load_model(b)(x, training=False)).reshape(2, -1)
    np.testing.assert_allclose(np.asarray(model(x)["members"])[:, 1], want, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files


def test_region_weights_are_built_and_recorded(tmp_path):
    a, b = run_folder(tmp_path, "a", 1), run_folder(tmp_path, "b", 2)
    out = tmp_path / "ens.h5"
    assert cli_main(["ensemble", str(a), str(b), "--weights", "0.6", "0.4", "--region-weights", "jaw=0.2,0.8",
                     "mouth=0.9,0.1", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["ensemble"]["region_weights"] == {"jaw": [0.2, 0.8], "mouth": [0.9, 0.1]}
    assert "--region-weights jaw=0.2,0.8 mouth=0.9,0.1" in record["command"]
    assert cli_main(["ensemble", str(a), str(b), "--weights", "0.6", "0.4", "--anchor-gate", "1", "0.02", "0.04",
                     "--out", str(tmp_path / "gated.h5")]) == 0
    gated = json.loads((tmp_path / "gated.json").read_text())["ensemble"]
    assert gated["anchor_gate"] == {"member": 1, "low": 0.02, "high": 0.04} and "region_weights" not in gated
    assert load_model(tmp_path / "gated.h5").get_layer("average").anchor_gate == gated["anchor_gate"]
    out_pts = load_model(out)(np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    stacked = np.asarray(out_pts["members"]).reshape(2, 2, 68, 2)
    avg = np.asarray(out_pts["landmarks"]).reshape(2, 68, 2)
    for n, (wa, wb) in ((3, (0.2, 0.8)), (30, (0.6, 0.4)), (60, (0.9, 0.1))):  # jaw, nose (global), mouth
        np.testing.assert_allclose(avg[:, n], wa * stacked[:, 0, n] + wb * stacked[:, 1, n], atol=1e-5)


def test_margins_must_agree(tmp_path, capsys):
    a, b = run_folder(tmp_path, "a", 1), run_folder(tmp_path, "b", 2, margin=0.3)
    out = tmp_path / "ens.h5"
    assert cli_main(["ensemble", str(a), str(b), "--weights", "0.5", "0.5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "margins differ" in err and "0.3" in err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_a_member_without_settings_needs_margin(tmp_path, capsys):
    a = run_folder(tmp_path, "a", 1)
    bare = tmp_path / "bare.h5"
    randomize(build_regressor("mnv2", 68, input_size=32, alpha=0.35), seed=3).save(bare)
    out = tmp_path / "ens.h5"
    assert cli_main(["ensemble", str(a), str(bare), "--weights", "0.5", "0.5", "--out", str(out)]) == 1
    assert f"{bare}: no settings" in capsys.readouterr().err and not out.exists()
    assert cli_main(["ensemble", str(a), str(bare), "--weights", "0.5", "0.5", "--out", str(out), "--margin", "0.25"]) == 0
    assert out.is_file()
    assert cli_main(["ensemble", str(a), str(bare), "--weights", "0.5", "0.5", "--out", str(tmp_path / "x.h5"),
                     "--margin", "0.2"]) == 1  # --margin must match the members that state one
    assert "margins differ" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--weights", "0.5", "0.6"], "sum to 1"),
    (["--weights", "1.0"], "2 members need 2 weights"),
    (["--weights", "0.5", "0.5", "--out-suffix"], ".h5 or .keras"),
    (["--weights", "0.5", "0.5", "--region-weights", "jaw:0.5,0.5"], "expected NAME=w1,w2"),
    (["--weights", "0.5", "0.5", "--region-weights", "jaw=0.5,0.5", "jaw=0.4,0.6"], "given twice"),
    (["--weights", "0.5", "0.5", "--region-weights", "ears=0.5,0.5"], "unknown region 'ears'"),
    (["--weights", "0.5", "0.5", "--region-weights", "jaw=0.5,0.6"], "sum to 1"),
    (["--weights", "0.5", "0.5", "--anchor-gate", "2", "0.1", "0.2"], "member index 0..1"),
])
def test_bad_options_are_errors(tmp_path, capsys, extra, message):
    a, b = run_folder(tmp_path, "a", 1), run_folder(tmp_path, "b", 2)
    out = tmp_path / ("ens.txt" if "--out-suffix" in extra else "ens.h5")
    extra = [e for e in extra if e != "--out-suffix"]
    assert cli_main(["ensemble", str(a), str(b), *extra, "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
