"""Wall time of ``acrloss --help``, ``acrloss align --help`` and an argument error, and which
backend modules each imports (target: <= 1 s, no TensorFlow / JAX / Keras).

    python benchmarks/cli_startup.py [--repeat 5] [--json OUT]

Each command runs ``--repeat`` times in a fresh ``python -X importtime -m acrloss ...``
process (the import log names every imported module); the median wall time is reported.
References measured in the same run, with the same interpreter: the bare interpreter
(``python -c pass``), ``import dlib`` (the detector the command uses; the speed reference of
this project's benchmarks) and ``import keras`` (what ``--help`` cost when the backend was
imported before argument parsing; measured once). The ``acrloss`` package is the one beside this script
(``PYTHONPATH`` is set to the repository root). Prints JSON.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "jaxlib", "keras", "torch")
TARGET_S = 1.0
COMMANDS = {
    "acrloss --help": ["-m", "acrloss", "--help"],
    "acrloss align --help": ["-m", "acrloss", "align", "--help"],
    "acrloss align (argument error)": ["-m", "acrloss", "align", "photo.jpg"],
}
REFERENCES = {
    "python -c pass": ["-c", "pass"],
    "import dlib": ["-c", "import dlib"],
    "import keras": ["-c", "import keras"],
}


def timed(args: list[str], cwd: Path) -> tuple[float, int, set[str]]:
    """``(wall seconds, exit status, top-level modules imported)`` of one fresh process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, check=False)
    wall = time.perf_counter() - t0
    modules = {ln.rsplit("|", 1)[1].strip().split(".")[0] for ln in proc.stderr.splitlines()
               if ln.startswith("import time:") and "|" in ln}
    return wall, proc.returncode, modules


def measure(args: list[str], repeat: int, cwd: Path) -> dict:
    runs, codes, backends = [], set(), set()
    for _ in range(repeat):
        wall, rc, modules = timed(args, cwd)
        runs.append(round(wall, 4))
        codes.add(rc)
        backends |= modules & set(BACKENDS)
    return {"median_s": round(statistics.median(runs), 4), "runs_s": runs, "exit_codes": sorted(codes),
            "backend_modules_imported": sorted(backends)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="fresh processes per command (default 5)")
    p.add_argument("--json", help="also write the JSON here")
    a = p.parse_args(argv)
    cwd = Path.cwd()
    result: dict = {"benchmark": "cli_startup", "python": platform.python_version(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "repeat": a.repeat, "target_s": TARGET_S, "commands": {}, "references": {}}
    for name, args in REFERENCES.items():  # keras: once (tens of seconds on a busy machine)
        result["references"][name] = measure(args, 1 if name == "import keras" else a.repeat, cwd)
    for name, args in COMMANDS.items():
        result["commands"][name] = measure(args, a.repeat, cwd)
    dlib_s = result["references"]["import dlib"]["median_s"]
    keras_s = result["references"]["import keras"]["median_s"]
    for row in result["commands"].values():
        row["ratio_vs_import_dlib"] = round(row["median_s"] / dlib_s, 2) if dlib_s else None
        row["ratio_vs_import_keras"] = round(row["median_s"] / keras_s, 3) if keras_s else None
    worst = max(row["median_s"] for row in result["commands"].values())
    result["worst_median_s"] = worst
    result["target_met"] = bool(worst <= TARGET_S and not any(r["backend_modules_imported"]
                                                              for r in result["commands"].values()))
    from acrloss.io import emit_json  # noqa: PLC0415  (after the timed processes: nothing of acrloss imported before)

    emit_json(result, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
