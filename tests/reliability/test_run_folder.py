"""Run-folder rules of training (issue 15, item 3): a fresh run refuses a non-empty folder
unless ``--overwrite``; unreadable resume state gives one clear line (or is recovered from
the previous checkpoint); temporary files of killed writers are removed; a finished run is
left alone; rejected labels are summarized."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from acrloss import train as train_module
from acrloss.checkpoint import CHECKPOINT, PREVIOUS, CheckpointError, RunFolderError, read_checkpoint, write_checkpoint
from acrloss.config import AugmentConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tiny_run import SETTINGS, make_faces, tiny_trainer_class  # noqa: E402


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("ACRLOSS_QUIET", "1")


def tiny(save: Path, data: Path, epochs: int = 2):
    return tiny_trainer_class()(save_path=save, data_dir=data, epochs=epochs, augment=AugmentConfig(), **SETTINGS)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        train_module.main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def test_fresh_run_refuses_a_non_empty_folder_and_keeps_it(faces, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.h5").write_bytes(b"weeks of training")
    (run / "log.csv").write_text("epoch,loss\n0,1.0\n")
    before = snapshot(run)
    code, err = cli(capsys, "--data-dir", str(faces), "--save-path", str(run), "--epochs", "1")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("acrloss-train: error:")]
    assert len(lines) == 1 and str(run) in lines[0] and "--overwrite" in lines[0] and "--resume" in lines[0]
    assert snapshot(run) == before


def test_overwrite_replaces_the_old_run_and_summarizes_rejected_labels(faces, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(faces, data)
    lines = (data / "face03.pts").read_text().splitlines()
    lines[5] = "1e30 1e30"
    (data / "absurd.pts").write_text("\n".join(lines) + "\n")
    shutil.copy(data / "face03.png", data / "absurd.png")
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.h5").write_bytes(b"old")
    (run / "log.csv").write_text("epoch,loss\n" + "".join(f"{i},1.0\n" for i in range(5)))
    (run / CHECKPOINT).write_bytes(b"old state")
    (run / ".best.h5.k2j3h4.h5").write_bytes(b"half a model")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty"):
        tiny(run, data).train()
    summary = tiny(run, data).train(overwrite=True)
    assert [Path(r["file"]).name for r in summary["rejected"]] == ["absurd.pts"]
    assert "absurdly far" in summary["rejected"][0]["reason"]
    assert summary["train_faces"] + summary["val_faces"] == 20  # the bad face is not trained on
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert read_checkpoint(run / CHECKPOINT).epoch == 2
    assert not (run / ".best.h5.k2j3h4.h5").exists()
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_empty_checkpoint_is_named_not_a_json_traceback(faces, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / CHECKPOINT).write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"checkpoint\.npz: unreadable checkpoint \(empty file\)"):
        tiny(run, faces).train(resume=True)
    code, err = cli(capsys, "--data-dir", str(faces), "--save-path", str(run), "--resume")
    assert code == 2 and "Traceback" not in err and "checkpoint.npz: unreadable checkpoint (empty file)" in err


def test_empty_keras_backup_metadata_of_an_old_run_is_named(faces, tmp_path, capsys):
    """The issue's drill: an older run folder whose backup/training_metadata.json is empty."""
    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    (run / "backup" / "training_metadata.json").write_bytes(b"")
    (run / "log.csv").write_text("epoch,loss\n0,1.0\n")
    before = snapshot(run)
    code, err = cli(capsys, "--data-dir", str(faces), "--save-path", str(run), "--resume")
    assert code == 2 and "Traceback" not in err and "JSONDecodeError" not in err
    assert f"{run}: no checkpoint.npz to resume from" in err
    assert snapshot(run) == before


def test_a_corrupt_newest_checkpoint_is_recovered_from_the_previous_one(faces, tmp_path):
    run = tmp_path / "run"
    tiny(run, faces, epochs=3).train()
    want_log = (run / "log.csv").read_bytes()
    want = read_checkpoint(run / CHECKPOINT)
    assert read_checkpoint(run / PREVIOUS).epoch == 2
    data = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(data[: len(data) // 2])  # a disk-level truncation
    (run / ".checkpoint.npz.abcd1234.tmp").write_bytes(b"partial")
    (run / "pca" / ".300w_pca80_meanvector.npy.x1.tmp").write_bytes(b"partial")
    summary = tiny(run, faces, epochs=3).train(resume=True)
    assert len(summary["history"]["loss"]) == 1  # only the third epoch was redone
    got = read_checkpoint(run / CHECKPOINT)
    assert got.epoch == 3 and got.log == want.log
    for a, b in zip(got.model_values + got.optimizer_values, want.model_values + want.optimizer_values):
        np.testing.assert_array_equal(a, b)
    assert (run / "log.csv").read_bytes() == want_log
    assert sorted(p.name for p in run.rglob(".*")) == []


def test_resume_of_a_finished_older_run_touches_nothing(faces, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.h5").write_bytes(b"a finished model")
    (run / "summary.json").write_text(json.dumps({"epochs": 2, "best_val_nme": 5.0, "history": {"loss": [2.0, 1.0]}}))
    before = snapshot(run)
    summary = tiny(run, faces, epochs=2).train(resume=True)
    assert summary["status"] == "already finished" and summary["best_val_nme"] == 5.0
    assert snapshot(run) == before


def flat_settings(config: dict, **changes) -> dict:
    """``config`` (nested, as written now) in the flat form of runs started before the loss and
    family configs were split out (every family's settings side by side, the others at their defaults)."""
    flat = {k: v for k, v in config.items() if k not in ("loss", "model")}
    model = {k: v for k, v in config["model"].items() if k != "family"}
    flat.update(loss=config["loss"]["name"], acr_lambda=config["loss"]["acr_lambda"], acr_scale=config["loss"]["acr_scale"],
                heatmap_size=None, heatmap_sigma=None, decoder="keyposs", heatmap_fg_weight=10.0, musica_error_weight=0.1,
                musica_options={}, **model)
    return {**flat, **changes}


def test_a_run_started_before_the_family_configs_resumes(faces, tmp_path):
    """A run whose checkpoint and config.json hold the old flat settings resumes with the same
    settings (now nested) and still refuses other ones."""
    run = tmp_path / "run"
    tiny(run, faces, epochs=3).train()
    state = read_checkpoint(run / PREVIOUS)  # after epoch 2 of 3
    assert state.epoch == 2 and state.config["model"]["family"] == "regression"
    old = flat_settings(state.config)
    (run / CHECKPOINT).unlink()
    (run / PREVIOUS).unlink()
    state.config = old
    write_checkpoint(run, state)
    (run / "config.json").write_text(json.dumps(old))
    summary = tiny(run, faces, epochs=3).train(resume=True)
    assert len(summary["history"]["loss"]) == 1  # only the third epoch was run
    assert read_checkpoint(run / CHECKPOINT).config["model"] == {"family": "regression", "alpha": 0.35, "head": "gap"}

    other = tmp_path / "other"
    shutil.copytree(run, other)
    state = read_checkpoint(other / CHECKPOINT)
    (other / CHECKPOINT).unlink()
    (other / PREVIOUS).unlink()
    state.config, state.epoch = flat_settings(state.config, alpha=1.0), 2
    write_checkpoint(other, state)
    with pytest.raises(CheckpointError, match="model"):
        tiny(other, faces, epochs=3).train(resume=True)
