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


def test_simplex_grid(bench):
    assert bench.simplex_grid(2, 0.25) == [[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]]
    grid = bench.simplex_grid(3, 0.05)
    assert len(grid) == 171  # positive compositions of 20 into 3 parts: C(19, 2)
    assert all(min(v) > 0 and abs(sum(v) - 1) < 1e-9 for v in grid)
    assert len({tuple(v) for v in grid}) == len(grid)
    for step in (0.3, 0.5, 0.0):  # 1/0.3 not whole; 0.5 gives 2 units for 3 members; 0 invalid
        with pytest.raises(ValueError, match="--grid"):
            bench.simplex_grid(3, step)


def test_option_errors(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--data-dir", str(tmp_path), "--json", str(tmp_path / "x.json"), "--split", "random",
                    "--members", "a.h5", "b.h5", "--weights", "0.6,0.6"])
    with pytest.raises(SystemExit):
        bench.main(["--data-dir", str(tmp_path), "--json", str(tmp_path / "x.json"), "--split", "random",
                    "--members", "a.h5", "--weights", "1.0"])
    for extra in (["--leave-out", "-1", "--weights", "0.5,0.5"], [], ["--grid", "0.3"]):
        with pytest.raises(SystemExit):
            bench.main(["--data-dir", str(tmp_path), "--json", str(tmp_path / "x.json"), "--split", "random",
                        "--members", "a.h5", "b.h5", *extra])


@pytest.mark.slow
def test_mixes_on_the_validation_split(bench, w300_dir, tmp_path):
    out = tmp_path / "w.json"
    result = bench.main(["--data-dir", str(w300_dir), "--json", str(out), "--split", "random",
                         "--members", "musica_p8_acr_300w", "mnv2_acr_300w", "--weights", "0.999,0.001", "0.001,0.999",
                         "0.5,0.5", "--leave-out", "50", "--regions"])
    assert out.is_file() and result["faces"] == 151  # the fixed-seed 10 % of 2,012 train faces, less 50
    assert result["left_out"] == 50
    a, b = (result["members"][m]["nme"] for m in ("musica_p8_acr_300w", "mnv2_acr_300w"))
    rows = result["rows"]
    assert rows[0]["nme"] == pytest.approx(a, abs=0.01) and rows[1]["nme"] == pytest.approx(b, abs=0.01)
    assert abs(a - b) > 0.05  # the two members differ, so the rows above tell them apart
    assert rows[2]["nme"] < min(a, b)  # averaging two different models helps
    assert result["best"] == bench.best_row(rows)
    regions = result["regions"]  # each region picks among the same vectors, the global best included
    assert set(regions["weights"]) == {"jaw", "brows", "nose", "eyes", "mouth"}
    assert regions["nme"] <= result["best"]["nme"] + 1e-4 and regions["base"] == result["best"]["weights"]
    assert regions["arguments"].startswith("--weights ") and "--region-weights jaw=" in regions["arguments"]
