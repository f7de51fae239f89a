"""acrloss.presets: models by name (user folder, checkout, bundled default) and data folders."""
from __future__ import annotations


import pytest

from acrloss import presets


def test_default_model_is_bundled_with_the_package():
    bundled = presets.BUNDLED_DIR / f"{presets.DEFAULT_MODEL}.h5"
    assert bundled.is_file() and bundled.stat().st_size > 1_000_000
    assert (presets.BUNDLED_DIR / f"{presets.DEFAULT_MODEL}.json").is_file()
    assert presets.DEFAULT_MODEL in presets.available_models()


def test_name_resolves_and_user_folder_comes_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ACRLOSS_HOME", str(tmp_path))
    found = presets.resolve_model("mnv2_acr_300w")
    assert found.name == "mnv2_acr_300w.h5" and found.is_file()
    assert presets.resolve_model("mnv2_acr_300w.h5") == found
    (tmp_path / "models").mkdir()
    mine = tmp_path / "models" / "mnv2_acr_300w.h5"
    mine.write_bytes(b"x")
    assert presets.resolve_model("mnv2_acr_300w") == mine
    (tmp_path / "models" / "my_model.keras").write_bytes(b"x")
    assert "my_model" in presets.available_models()


def test_unknown_name_lists_what_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("ACRLOSS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="available names: .*mnv2_acr_300w"):
        presets.resolve_model("no_such_model")
    with pytest.raises(FileNotFoundError, match="no such file"):
        presets.resolve_model(tmp_path / "missing.h5")


def test_data_dir_discovery(tmp_path, monkeypatch):
    monkeypatch.setenv("ACRLOSS_300W", str(tmp_path))
    assert presets.find_data_dir("300w") == (tmp_path, "ACRLOSS_300W")
    assert presets.find_data_dir("300w", explicit=tmp_path)[0] == tmp_path
    assert presets.find_data_dir("300w", explicit=tmp_path / "nope")[0] is None
    monkeypatch.setenv("ACRLOSS_300W", str(tmp_path / "nope"))
    path, why = presets.find_data_dir("300w")
    assert path is None and "not a folder" in why
    monkeypatch.delenv("ACRLOSS_300W")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    (tmp_path / "shared" / "data" / "wflw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    assert presets.find_data_dir("wflw")[0] == (tmp_path / "shared" / "data" / "wflw").resolve()
