"""Train several runs at once on a borrowed machine, each fitted to one wall-clock budget.

A GPU lease is short and its speed unknown beforehand. This starts every run of a plan at
its target epoch count, times its first ``--calibrate`` epochs under the full concurrency,
and, where the target cannot finish before the deadline, restarts it with ``--resume
--epochs E`` (E fitted to the time left). The epochs already run had the same schedule
under both counts (the warm-up), so the result is exactly the E-epoch run
(``acrloss.train`` allows this change on resume only then). At the deadline every run still
training is stopped; its ``best.h5`` so far is kept and marked unfinished.

    python scripts/lease_train.py PLAN.json --runs /tmp/runs --out $OUT --deadline 520

PLAN.json: ``{"common": [train.py flags...], "runs": [{"name": "a", "epochs": 100,
"args": [flags...]}, ...]}``. Writes ``OUT/NAME.h5`` (each run's best.h5),
and ``OUT/meta.tgz`` (configs, logs, summaries, stderr of every run, ``lease.json``: what each
run did); the report is printed too.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def strip_optimizer(src: Path, dst: Path) -> None:
    """Copy a Keras ``.h5`` model without its optimizer state (a quarter of the size: what
    ``scripts/ship_checkpoint.py`` keeps anyway)."""
    import h5py

    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        for key, value in fin.attrs.items():
            if key != "training_config":
                fout.attrs[key] = value
        fin.copy("model_weights", fout)


def rows(run_dir: Path) -> int:
    """Finished epochs recorded in ``log.csv`` (written after the epoch's checkpoint)."""
    try:
        return max(0, len((run_dir / "log.csv").read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


class Run:
    def __init__(self, name: str, target: int, args: list[str], runs: Path, env: dict[str, str], script: Path) -> None:
        self.name, self.target, self.args, self.env, self.script = name, int(target), list(args), env, script
        self.dir = runs / name
        self.epochs = self.target
        self.seen: dict[int, float] = {}
        self.proc: subprocess.Popen | None = None
        self.launched = 0.0
        self.calibrated = False
        self.note = ""

    def launch(self, resume: bool) -> None:
        cmd = [sys.executable, str(self.script), *self.args, "--epochs", str(self.epochs), "--save-path", str(self.dir)]
        cmd.append("--resume" if resume else "--overwrite")
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dir.parent / f"{self.name.replace('/', '_')}.stderr", "a") as err:  # the child keeps its own copy
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=self.env, cwd=REPO)
        self.launched = time.time()

    def poll(self) -> None:
        n = rows(self.dir)
        for k in range(1, n + 1):
            self.seen.setdefault(k, time.time())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("plan", type=Path)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--deadline", type=float, required=True, help="seconds from now when every run must have stopped")
    p.add_argument("--calibrate", type=int, default=3, help="epochs timed before fitting (within the warm-up + 1)")
    p.add_argument("--safety", type=float, default=1.2, help="factor on the measured epoch time")
    p.add_argument("--train", type=Path, default=REPO / "train.py", help=argparse.SUPPRESS)  # tests: a stand-in trainer
    a = p.parse_args(argv)
    t0 = time.time()
    end = t0 + a.deadline
    plan = json.loads(a.plan.read_text())
    env = {**os.environ, "ACRLOSS_QUIET": "1"}
    runs = [Run(r["name"], r["epochs"], [*plan.get("common", []), *r["args"]], a.runs, env, a.train) for r in plan["runs"]]
    for r in runs:
        r.launch(resume=False)
    while True:
        time.sleep(0.1)
        now = time.time()
        for r in runs:
            r.poll()
            if r.calibrated or len(r.seen) < a.calibrate or r.proc is None or r.proc.poll() is not None:
                continue
            r.calibrated = True
            k = a.calibrate
            per_epoch = max(r.seen[i + 1] - r.seen[i] for i in range(1, k)) * a.safety
            overhead = max(0.0, r.seen[1] - r.launched - per_epoch)  # start-up: data, PCA, compilation
            left = end - now - overhead - 10.0
            fit = max(9, k + int(left // per_epoch))  # > 8: the first epochs keep curriculum level 0
            r.note = f"epoch {per_epoch / a.safety:.2f} s, start-up {overhead:.0f} s"
            if fit >= r.target:
                continue
            r.proc.send_signal(signal.SIGKILL)
            r.proc.wait()
            if rows(r.dir) > k:  # it finished another epoch meanwhile: the schedules differ from there
                r.note += "; kept its epochs (it had passed the warm-up)"
                r.launch(resume=True)
                continue
            r.epochs = fit
            r.note += f"; refitted to {fit} epochs"
            r.launch(resume=True)
        running = [r for r in runs if r.proc is not None and r.proc.poll() is None]
        if not running or now >= end:
            break
    for r in runs:
        if r.proc is not None and r.proc.poll() is None:
            r.proc.send_signal(signal.SIGKILL)
            r.proc.wait()
    a.out.mkdir(parents=True, exist_ok=True)
    report = {"seconds": round(time.time() - t0, 1), "runs": []}
    for r in runs:
        done = rows(r.dir)
        entry = {"name": r.name, "target_epochs": r.target, "epochs": r.epochs, "epochs_done": done,
                 "finished": (r.dir / "summary.json").is_file() and done >= r.epochs, "returncode": r.proc.returncode if r.proc else None,
                 "note": r.note}
        if (r.dir / "best.h5").is_file():
            strip_optimizer(r.dir / "best.h5", a.out / f"{r.name.replace('/', '_')}.h5")
        report["runs"].append(entry)
    (a.runs / "lease.json").write_text(json.dumps(report, indent=1))
    with tarfile.open(a.out / "meta.tgz", "w:gz") as tar:
        for path in sorted(a.runs.rglob("*")):
            if path.is_file() and path.suffix not in (".h5", ".npz") and "tensorboard" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(a.runs)))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
