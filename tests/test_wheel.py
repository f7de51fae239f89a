"""The wheel: a plain install brings TensorFlow and the default model, found from any directory."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{proc.stderr[-2000:]}")
    (found,) = out.glob("acrloss-*.whl")
    return found


def test_wheel_requires_tensorflow_and_bundles_the_default_model(wheel):
    from acrloss.presets import DEFAULT_MODEL

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        bundled = z.getinfo(f"acrloss/_bundled/{DEFAULT_MODEL}.h5")
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.split()[1].startswith("tensorflow") and "extra ==" not in r for r in requires), requires
    assert not any(r.split()[1].startswith("jax") and "extra ==" not in r for r in requires)
    assert bundled.file_size > 1_000_000  # the real file, not a link
    assert f"acrloss/_bundled/{DEFAULT_MODEL}.json" in names


def test_installed_wheel_finds_the_default_model_from_an_empty_directory(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import acrloss, acrloss.presets as p; print(acrloss.__file__); "
            "print(p.resolve_model(p.DEFAULT_MODEL))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=empty, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    package_file, model = proc.stdout.split()
    assert Path(package_file).is_relative_to(site)
    assert Path(model).is_relative_to(site / "acrloss" / "_bundled") and Path(model).stat().st_size > 1_000_000
