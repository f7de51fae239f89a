"""``acrloss --help``, ``acrloss align --help`` and argument errors load no backend, and every
command prints only its own output (issue 19 item 3, issue 14 item 8).

The commands run in a subprocess with ``python -X importtime``; its import log names every
module imported, so a TensorFlow, JAX or Keras import shows there. The wall time is measured
by ``benchmarks/cli_startup.py`` (not asserted here: the machine is shared).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "jaxlib", "keras", "torch")


def run(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ACRLOSS_VERBOSE")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
                          check=False)


def imported_modules(importtime_log: str) -> set[str]:
    """Top-level package names in a ``-X importtime`` log."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name.split(".")[0])
    return names


def test_importtime_parser_sees_a_backend_import():
    """The check below can fail: a real backend import is seen."""
    proc = run(["-X", "importtime", "-c", "import keras"], REPO)
    assert "keras" in imported_modules(proc.stderr)


@pytest.mark.parametrize("args, rc, where", [
    (["--help"], 0, "out"),
    (["align", "--help"], 0, "out"),
    (["export", "--help"], 0, "out"),
    (["align"], 2, "err"),                                   # missing PATH and --out
    (["align", "x.jpg", "--out", "o", "--refine", "two"], 2, "err"),   # a bad value
    (["align", "x.jpg", "--out", "o", "--upsample", "-1"], 2, "err"),  # checked before any model load
    (["no-such-command"], 2, "err"),
    ([], 2, "err"),
])
def test_help_and_argument_errors_import_no_backend(tmp_path, args, rc, where):
    proc = run(["-X", "importtime", "-m", "acrloss", *args], tmp_path)
    assert proc.returncode == rc, proc.stderr[-2000:]
    backends = imported_modules(proc.stderr) & set(BACKENDS)
    assert not backends, f"acrloss {' '.join(args)} imported {sorted(backends)}"
    text = proc.stdout if where == "out" else "\n".join(
        ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:"))
    assert "usage: acrloss" in text
    assert not (tmp_path / "o").exists()  # an argument error writes nothing


def test_import_acrloss_loads_no_backend_and_names_stay_available(tmp_path):
    code = ("import sys, acrloss; assert not {'tensorflow', 'jax', 'keras'} & set(sys.modules), sorted(sys.modules); "
            "from acrloss import DatasetName, FaceAligner; import keras; "
            "from acrloss import ACRLoss, Test; from acrloss import test; print(ACRLoss.__name__, test.__name__)")
    proc = run(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ACRLoss", "acrloss.test"]


def _photo() -> Path:
    env = os.environ.get("ACRLOSS_300W")
    base = Path(env) if env else REPO.parent / "shared" / "data" / "300w"
    p = base / "full" / "lfpw" / "testset" / "image_0001.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not found (300-W whole photos)")
    pytest.importorskip("dlib", reason="dlib is not installed")
    return p


def test_align_prints_only_its_own_output_and_verbose_shows_backend_logs(tmp_path):
    photo = _photo()
    quiet = run(["-m", "acrloss", "align", str(photo), "--out", str(tmp_path / "q")], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr  # no TensorFlow / absl notices
    assert [ln.split(":")[0] for ln in quiet.stdout.splitlines()] == [str(photo), "1 image(s) read, 1 face(s) found, 0 "
                                                                      "image(s) without a face, 0 unreadable, 0 failed; "
                                                                      "output in " + str(tmp_path / "q") + ", manifest " +
                                                                      str(tmp_path / "q" / "align_manifest.json")]
    loud = run(["-m", "acrloss", "align", "--verbose", str(photo), "--out", str(tmp_path / "v")], tmp_path)
    assert loud.returncode == 0, loud.stderr
    assert "cpu_feature_guard" in loud.stderr or "absl" in loud.stderr, loud.stderr[-2000:]



def test_acrloss_verbose_env_turns_backend_logs_on_for_any_entry_point(tmp_path):
    """``import acrloss`` (what ``python train.py`` / ``test.py`` do first) quiets TensorFlow's C++
    notices and absl's Python warnings (here: Keras' "legacy HDF5" warning); ACRLOSS_VERBOSE=1
    brings both back."""
    code = ("import acrloss, keras; m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]); "
            "m.save('m.h5'); print('saved')")
    quiet = run(["-c", code], tmp_path)
    loud = run(["-c", code], tmp_path, {"ACRLOSS_VERBOSE": "1"})
    assert quiet.returncode == loud.returncode == 0, loud.stderr[-2000:]
    assert quiet.stdout == loud.stdout == "saved\n"
    assert quiet.stderr == "", quiet.stderr
    assert "HDF5" in loud.stderr, loud.stderr  # absl's Python warning
    assert "cpu_feature_guard" in loud.stderr or "InitializeLog" in loud.stderr, loud.stderr  # TensorFlow's C++ log
