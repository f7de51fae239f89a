"""Shared fixtures: where the real 300-W data lives, and a guard that tests never write there.

The data folder is found at ``<checkout>/../shared/data/300w`` (beside the checkout) or
through the environment variable ``ACRLOSS_300W``. Tests that need it skip, with the
reason, when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_300W = Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"


def w300_path() -> Path:
    """The configured 300-W folder (it may not exist)."""
    env = os.environ.get("ACRLOSS_300W")
    return Path(env) if env else DEFAULT_300W


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a longer integration test (still runs by default)")
    # Keras' TensorFlow backend calls np.array(tensor) in a way NumPy 2 warns about, once per
    # weight: noise that hides real warnings
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    )


@pytest.fixture(scope="session")
def w300_dir() -> Path:
    """The real 300-W folder; skips when absent. On teardown, checks that no test
    created, removed or modified anything inside it."""
    path = w300_path()
    if not (path.is_dir() and (path / "helen").is_dir()):
        pytest.skip(f"300-W data not found at {path}; set ACRLOSS_300W")
    before = _snapshot(path)
    yield path
    after = _snapshot(path)
    changed = sorted(set(before) ^ set(after) | {k for k in before.keys() & after.keys() if before[k] != after[k]})
    assert not changed, f"tests wrote into the read-only data folder {path}: {changed[:10]}"


@pytest.fixture(scope="session")
def w300_common(w300_dir):
    """Samples of the 300-W common test subset (points only; no pixels read)."""
    from acrloss.data_prep.datasets import w300_subset

    return w300_subset(w300_dir, "common")


class TrainCLI:
    """``train.main`` run on flags with ``Train`` replaced by a recorder (nothing trains):
    calling it returns the ``TrainConfig`` the command line made; ``resume`` holds the flag
    it passed to ``train()``."""

    def __init__(self, monkeypatch, folder: Path) -> None:
        from acrloss import train as train_module

        self._main, self._folder = train_module.main, folder
        self.config, self.resume = None, None
        cli = self

        class Recorder:
            def __init__(self, arch, dataset, save_path, data_dir, config):
                cli.config = config

            def train(self, resume=False, overwrite=False):
                cli.resume = resume
                return {"best_val_nme": None}

        monkeypatch.setattr(train_module, "Train", Recorder)

    def __call__(self, *flags: str):
        self._main(["--data-dir", str(self._folder), "--save-path", str(self._folder / "run"), *flags])
        return self.config


@pytest.fixture
def train_cli(monkeypatch, tmp_path) -> TrainCLI:
    """See :class:`TrainCLI`."""
    return TrainCLI(monkeypatch, tmp_path)
