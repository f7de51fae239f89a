"""benchmarks/ensemble_weights.py: member rows, mixes that tend to a member's own figures,
the tie-break of ``best``, and option errors."""
from __future__ import annotations


import pytest

from tests.benchmarks.bench_module import load_benchmark

@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ensemble_weights")


def test_best_row_breaks_near_ties_by_failures(bench):
    rows = [{"weights": [0.5, 0.5], "nme": 4.047, "fr10": 0.62}, {"weights": [0.6, 0.4], "nme": 4.0475, "fr10": 0.5},
            {"weights": [0.7, 0.3], "nme": 4.085, "fr10": 0.0}]
    assert bench.best_row(rows)["weights"] == [0.6, 0.4]  # 0.7 fails less but is 0.04 worse
    assert bench.parse_weights("0.6,0.4") == [0.6, 0.4]
    with pytest.raises(Exception, match="comma-separated"):
        bench.parse_weights("0.6;0.4")


def test_option_errors(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--data-dir", str(tmp_path), "--json", str(tmp_path / "x.json"), "--split", "random",
                    "--members", "a.h5", "b.h5", "--weights", "0.6,0.6"])
    with pytest.raises(SystemExit):
        bench.main(["--data-dir", str(tmp_path), "--json", str(tmp_path / "x.json"), "--split", "random",
                    "--members", "a.h5", "--weights", "1.0"])


@pytest.mark.slow
def test_mixes_on_the_validation_split(bench, w300_dir, tmp_path):
    out = tmp_path / "w.json"
    result = bench.main(["--data-dir", str(w300_dir), "--json", str(out), "--split", "random",
                         "--members", "musica_p8_acr_300w", "mnv2_acr_300w", "--weights", "0.999,0.001", "0.001,0.999",
                         "0.5,0.5"])
    assert out.is_file() and result["faces"] == 201  # the fixed-seed 10 % of 2,012 train faces
    a, b = (result["members"][m]["nme"] for m in ("musica_p8_acr_300w", "mnv2_acr_300w"))
    rows = result["rows"]
    assert rows[0]["nme"] == pytest.approx(a, abs=0.01) and rows[1]["nme"] == pytest.approx(b, abs=0.01)
    assert abs(a - b) > 0.05  # the two members differ, so the rows above tell them apart
    assert rows[2]["nme"] < min(a, b)  # averaging two different models helps
    assert result["best"] == bench.best_row(rows)
