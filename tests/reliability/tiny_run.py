"""A tiny, deterministic training run for the kill/resume drills, usable as a script.

``python tiny_run.py DATA SAVE EPOCHS [--resume] [--overwrite]`` trains a 32-px MobileNetV2
(alpha 0.35) on the synthetic faces of :func:`make_faces` and prints the summary as JSON.
Kill points are injected with ``ACRLOSS_FAULT`` (see :mod:`acrloss.checkpoint`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from acrloss.config import RegressionConfig


def make_faces(folder: Path, n: int = 20, size: int = 64, seed: int = 0) -> Path:
    """``n`` synthetic 68-point faces (an ellipse of points on textured noise) with
    1-based ``.pts`` files: enough for a training step, nothing to learn from."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    for i in range(n):
        c = size / 2 + rng.uniform(-4, 4, 2)
        r = size * rng.uniform(0.25, 0.35, 2)
        pts = np.stack([c[0] + r[0] * np.cos(t), c[1] + r[1] * np.sin(t)], 1) + rng.normal(0, 0.5, (68, 2))
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for x, y in pts:
            cv2.circle(img, (int(x), int(y)), 1, (255, 255, 255), -1)
        cv2.imwrite(str(folder / f"face{i:02d}.png"), img)
        body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in pts)
        (folder / f"face{i:02d}.pts").write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    return folder


SETTINGS = dict(arch="mnv2", dataset_name="images", input_size=32, model=RegressionConfig(alpha=0.35, head="gap"), batch_size=8,
                learning_rate=2e-3, val_fraction=0.2, workers=1, seed=3)


def tiny_trainer_class():
    """``Train`` with a tiny convolutional model in place of MobileNetV2 (same data, loss,
    curriculum, optimizer and checkpointing; tracing it takes a second, not a minute)."""
    import keras

    from acrloss.train import Train

    class TinyTrain(Train):
        def build_model(self):
            size = self.config.crop.input_size
            inputs = keras.Input((size, size, 3))
            x = keras.layers.Rescaling(1 / 255.0)(inputs)
            x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.GlobalAveragePooling2D()(x)
            x = keras.layers.Dropout(0.1)(x)
            outputs = keras.layers.Dense(2 * self.spec.num_points)(x)
            return keras.Model(inputs, outputs)

    return TinyTrain


def main(argv: list[str]) -> None:
    from acrloss.config import AugmentConfig

    data, save, epochs = argv[0], argv[1], int(argv[2])
    trainer = tiny_trainer_class()(save_path=save, data_dir=data, epochs=epochs, augment=AugmentConfig(), **SETTINGS)
    kwargs = {}
    if "--overwrite" in argv:
        kwargs["overwrite"] = True
    summary = trainer.train(resume="--resume" in argv, **kwargs)
    print("SUMMARY " + json.dumps({k: v for k, v in summary.items() if k != "history"}))


if __name__ == "__main__":
    main(sys.argv[1:])
