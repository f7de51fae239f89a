"""Training throughput (images/s): the data pipeline alone, the train step alone, and the two
together, per architecture, on 1 and N (simulated) devices; JSON.

    python benchmarks/train_throughput.py --json OUT [--data-dir DIR] [--archs mnv2 musica ...]
        [--devices 1 2] [--input-size 160] [--alpha 1.0] [--batch-size 16] [--faces 160] [--workers 2]
        [--steps 8] [--backend jax|tensorflow]

For each device count a child process (devices must exist before the backend starts; on a
machine without GPUs, N > 1 CPU devices are simulated: ``XLA_FLAGS=
--xla_force_host_platform_device_count=N`` for JAX, N logical CPUs for TensorFlow) runs, per
architecture, on ``--faces`` faces of the 300-W training folders:

- ``pipeline``: one pass of the training :class:`acrloss.data_prep.pipeline.LandmarkSequence`
  (augmentation on, ``--workers`` threads, in-epoch prefetch), ``cold`` decoding every image,
  then ``cached`` (a second pass with the decoded-image cache filled);
- ``together``: :class:`acrloss.train.Train` for two epochs with ``devices=N``; the images/s
  of epoch 2 (pipeline and train step overlapping; its first batch excluded);
- ``train_step``: the same compiled model, fitted on one prepared batch repeated ``--steps``
  times (first step excluded): what the devices consume when the data costs nothing.

``ratio_pipeline_cold_to_step``: pipeline (cold) images/s / train-step images/s: how many
such train steps the pipeline alone can feed. Timings on a shared machine are comparable
only within one run; the load average before and after is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARCHS = ("mnv2", "mnv2_heatmap", "musica", "efficientnet_b0")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class _BatchTimer:
    """Keras callback: end time of every train batch, per epoch."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.ends: dict[int, list[float]] = {}
                self.epoch = 0

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
                self.ends[epoch] = [time.perf_counter()]

            def on_train_batch_end(self, batch, logs=None):
                self.ends[self.epoch].append(time.perf_counter())

        return Timer()


def _rate(ends: list[float], batch: int, skip: int = 1) -> float:
    """images/s over the batches after the first ``skip`` (whose end times are ``ends[1:]``)."""
    times = ends[skip:]
    return batch * (len(times) - 1) / (times[-1] - times[0])


def measure_arch(arch: str, args: argparse.Namespace, devices: int) -> dict:
    import keras
    import numpy as np

    from acrloss.config import AugmentConfig
    from acrloss.data_prep.pipeline import LandmarkSequence
    from acrloss.distribution import precision_policy
    from acrloss.tasks import task_class
    from acrloss.train import Train

    # --alpha: the width of the arch's family config (None: its defaults; a family without a width refuses it)
    model = task_class(arch).config_class(alpha=args.alpha) if args.alpha != 1.0 else None
    common = dict(input_size=args.input_size, model=model, batch_size=args.batch_size, max_train_faces=args.faces,
                  val_fraction=0.05, workers=args.workers, devices=devices, epochs=2, augment=AugmentConfig(), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Train(arch, "300w", Path(tmp) / "run", args.data_dir, **common)
        train_samples, _ = trainer._samples()
        out: dict = {"arch": arch, "devices": devices, "train_faces": len(train_samples)}

        # the pipeline alone
        cfg = trainer.config
        seq = LandmarkSequence(train_samples, cfg.crop, batch_size=cfg.batch_size, augment=cfg.augment,
                               mirror=trainer.spec.mirror, shuffle=True, workers=cfg.workers,
                               cache_bytes=cfg.image_cache_mb << 20, **trainer.task.sequence_options())
        for name in ("cold", "cached"):
            start = time.perf_counter()
            images = sum(len(seq[i][0]) for i in range(len(seq)))
            out[f"pipeline_{name}_images_per_s"] = round(images / (time.perf_counter() - start), 1)
            seq.on_epoch_end()
        seq.close()

        # the two together: a real Train run, epoch 2
        timer = _BatchTimer()
        trainer.train(extra_callbacks=[timer])
        out["together_images_per_s"] = round(_rate(timer.ends[1], cfg.batch_size), 1)
        out["distribution"] = trainer.distribution.describe()

        # the train step alone: the compiled model on one prepared batch
        model = trainer.model
        batch = trainer.task.wrap(seq)[0]  # e.g. MuSiCa: the targets for every output
        if trainer.task.uses_phi:  # ACR targets carry Φ: (B, 4N)
            y = batch[1]
            batch = (batch[0], {k: np.concatenate([v, np.full_like(v, 0.5)], 1) for k, v in y.items()}
                     if isinstance(y, dict) else np.concatenate([y, np.full_like(y, 0.5)], 1))

        class Repeat(keras.utils.PyDataset):
            def __len__(self):
                return args.steps + 1

            def __getitem__(self, i):
                return batch[0], batch[1]

        step_timer = _BatchTimer()
        with trainer.distribution.scope(), precision_policy(cfg.precision):
            model.fit(Repeat(), epochs=1, verbose=0, callbacks=[step_timer], shuffle=False)
        out["train_step_images_per_s"] = round(_rate(step_timer.ends[0], cfg.batch_size), 1)
        out["ratio_pipeline_cold_to_step"] = round(out["pipeline_cold_images_per_s"] / out["train_step_images_per_s"], 2)
        return out


def child(args: argparse.Namespace) -> None:
    devices = args.devices[0]
    if devices > 1 and os.environ.get("KERAS_BACKEND") == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    rows = []
    for arch in args.archs:
        try:
            rows.append(measure_arch(arch, args, devices))
        except Exception as exc:  # one architecture's failure is reported, the others still run
            rows.append({"arch": arch, "devices": devices, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("ROWS " + json.dumps(rows), flush=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write the result here (else stdout only)")
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "300w")))
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"), choices=["jax", "tensorflow"])
    p.add_argument("--input-size", type=int, default=160)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--faces", type=int, default=160)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return {}
    result = {"command": "python benchmarks/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "backend": args.backend, "cpu_count": os.cpu_count(), "load_before": _load(), "runs": []}
    for n in args.devices:
        env = {**os.environ, "KERAS_BACKEND": args.backend, "TF_CPP_MIN_LOG_LEVEL": "3", "ACRLOSS_QUIET": "1",
               "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()}
        cmd = [sys.executable, __file__, "--child", "--devices", str(n), "--archs", *args.archs, "--data-dir", args.data_dir,
               "--input-size", str(args.input_size), "--alpha", str(args.alpha), "--batch-size", str(args.batch_size),
               "--faces", str(args.faces), "--workers", str(args.workers), "--steps", str(args.steps)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROWS ")]
        if proc.returncode != 0 or not rows:
            result["runs"].append({"devices": n, "error": f"child exited {proc.returncode}: {proc.stderr[-2000:]}"})
        else:
            result["runs"].extend(json.loads(rows[-1][5:]))
    result["load_after"] = _load()
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
