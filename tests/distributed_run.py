"""A tiny data-parallel training run on simulated devices, for ``test_distribution.py``;
usable as a script (the devices must be set up before the backend starts, hence a process
per run)::

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        python tests/distributed_run.py DATA SAVE EPOCHS DEVICES [--resume] [--precision P] [--dropout] [--workers N]

With the TensorFlow backend, ``ACRLOSS_TF_CPUS=N`` splits the CPU into N logical devices.
Trains the real ``Train`` (data pipeline, ACR loss and curriculum, optimizer, checkpoints)
with a 32-px Conv-BN model on the synthetic faces of ``reliability/tiny_run.make_faces``;
prints ``SUMMARY {json}`` with the devices used. Kill points: ``ACRLOSS_FAULT`` (see
:mod:`acrloss.checkpoint`).
"""
from __future__ import annotations

import json
import os
import sys

from acrloss.config import RegressionConfig

SETTINGS = dict(arch="mnv2", dataset_name="images", input_size=32, model=RegressionConfig(alpha=0.35, head="gap"), batch_size=8,
                learning_rate=2e-3, val_fraction=0.2, workers=1, seed=3)


def setup_tf_devices() -> None:
    """``ACRLOSS_TF_CPUS=N``: N logical CPU devices (before TensorFlow initializes)."""
    count = int(os.environ.get("ACRLOSS_TF_CPUS", "0"))
    if count > 1 and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def trainer_class(dropout: bool):
    import keras

    from acrloss.train import Train

    class SmallTrain(Train):
        def build_model(self):
            size = self.config.crop.input_size
            inputs = keras.Input((size, size, 3))
            x = keras.layers.Rescaling(1 / 255.0)(inputs)
            x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.GlobalAveragePooling2D()(x)
            if dropout:
                x = keras.layers.Dropout(0.1)(x)
            outputs = keras.layers.Dense(2 * self.spec.num_points)(x)
            return keras.Model(inputs, outputs)

    return SmallTrain


def main(argv: list[str]) -> None:
    setup_tf_devices()
    from acrloss.config import AugmentConfig

    data, save, epochs, devices = argv[0], argv[1], int(argv[2]), argv[3]
    precision = argv[argv.index("--precision") + 1] if "--precision" in argv else "float32"
    settings = dict(SETTINGS, workers=int(argv[argv.index("--workers") + 1]) if "--workers" in argv else SETTINGS["workers"])
    trainer = trainer_class("--dropout" in argv)(save_path=save, data_dir=data, epochs=epochs, augment=AugmentConfig(),
                                                 devices=devices, precision=precision, **settings)
    summary = trainer.train(resume="--resume" in argv)
    summary = {k: v for k, v in summary.items() if k != "rejected"}
    summary["distribution"] = trainer.distribution.describe()
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
