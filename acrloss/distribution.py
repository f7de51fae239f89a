"""Data-parallel training over several devices, and mixed precision, on the engines Keras
and TensorFlow ship (no home-made distribution layer).

* JAX backend: :class:`keras.distribution.DataParallel` over ``jax.devices()`` (GPUs when
  present, else the host CPU devices; ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
  simulates N of them). The train step is one SPMD program over the global batch: batch
  statistics and the loss are those of the whole global batch, as on one device.
* TensorFlow backend: :class:`tf.distribute.MirroredStrategy` over the GPUs (else the
  logical CPU devices); batch normalization is switched to synchronized statistics, so a
  replica normalizes with the global batch's mean and variance, as on one device.
* Several machines: JAX only (:func:`initialize_multi_host`, ``docs/distributed.md``); each
  process feeds its block of every global batch.

Batch and learning-rate rule: ``batch_size`` is the *global* batch, split evenly over the
devices (it must be a multiple of their number); ``learning_rate`` is the rate for that
global batch. Changing only the number of devices therefore changes nothing in the
optimization (same global batch, same rate, same result up to float rounding). Growing the
global batch by a factor k calls for k times the rate (the linear scaling rule,
:func:`scaled_learning_rate`; the schedule's warm-up epochs absorb the early instability).

TensorFlow may be imported here: this is an edge module used by ``acrloss.train``, not the
``keras.ops`` core.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import keras

from acrloss.config import AUTO_DEVICES as AUTO
from acrloss.config import PRECISIONS, parse_devices, parse_precision

__all__ = ["AUTO", "PRECISIONS", "DataParallel", "available_devices", "parse_devices", "parse_precision",
           "precision_policy", "scaled_learning_rate", "initialize_multi_host"]

def available_devices(backend: str | None = None) -> list[Any]:
    """The devices data parallelism may use: JAX's default-platform devices; TensorFlow's
    logical GPUs, else its logical CPUs; one ``"cpu"`` for any other backend."""
    backend = backend or keras.backend.backend()
    if backend == "jax":
        import jax

        return list(jax.devices())
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices("GPU")] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return ["cpu"]


def initialize_multi_host(backend: str | None = None) -> int:
    """Joins a multi-host job, before any device is used; returns the number of processes.

    JAX: when ``KERAS_DISTRIBUTION_NUM_PROCESSES`` > 1, ``keras.distribution.initialize()``
    (``jax.distributed.initialize``) with ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator
    first) and ``KERAS_DISTRIBUTION_PROCESS_ID``. TensorFlow: a ``TF_CONFIG`` naming more than
    one worker is refused (``ValueError``): multi-worker TensorFlow training is not supported.
    """
    backend = backend or keras.backend.backend()
    if backend == "tensorflow" and "TF_CONFIG" in os.environ:
        import json

        workers = json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker", [])
        if len(workers) > 1:
            raise ValueError("TF_CONFIG names several workers: multi-worker TensorFlow training is not supported; "
                             "train multi-host with KERAS_BACKEND=jax (docs/distributed.md)")
    processes = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1"))
    if backend == "jax" and processes > 1:
        import jax

        if not jax.distributed.is_initialized():  # (asking jax.process_count() first would start the backend)
            keras.distribution.initialize()
        return jax.process_count()
    return 1


def scaled_learning_rate(base_lr: float, base_batch: int, global_batch: int) -> float:
    """The linear scaling rule: the rate for ``global_batch`` when ``base_lr`` suits ``base_batch``."""
    if base_batch < 1 or global_batch < 1:
        raise ValueError(f"batch sizes must be >= 1, got {base_batch} and {global_batch}")
    return float(base_lr) * global_batch / base_batch


_TF_STRATEGIES: dict[tuple, Any] = {}


class DataParallel:
    """Replicates the model over ``devices`` (``"auto"``: all of :func:`available_devices`;
    N: the first N) and splits each global batch over them.

    Use::

        dp = DataParallel(devices=2)
        dp.check_batch(cfg.batch_size)
        with dp.scope():        # build, compile and fit inside
            model = build(); dp.prepare_model(model); model.compile(...); model.fit(...)

    One device is the plain, undistributed path. Raises ``ValueError`` when more devices are
    asked for than the backend has, naming what it has.
    """

    def __init__(self, devices: "str | int" = AUTO, backend: str | None = None) -> None:
        self.backend = backend or keras.backend.backend()
        self.processes = initialize_multi_host(self.backend)
        asked = parse_devices(devices)
        avail = available_devices(self.backend)
        if asked != AUTO and asked > len(avail):
            hint = ("set XLA_FLAGS=--xla_force_host_platform_device_count=N before starting to simulate CPU devices"
                    if self.backend == "jax" else "it lists no more GPUs or logical CPUs")
            raise ValueError(f"devices={asked}: the {self.backend} backend has {len(avail)} device(s) "
                             f"({', '.join(map(str, avail))}); {hint}")
        if asked != AUTO and asked > 1 and self.backend not in ("jax", "tensorflow"):
            raise ValueError(f"devices={asked}: data-parallel training needs the jax or tensorflow backend, not {self.backend}")
        self.devices = avail if asked == AUTO else avail[:asked]
        self.num_replicas = len(self.devices) if self.backend in ("jax", "tensorflow") else 1
        self._engine: Any = None
        if self.num_replicas > 1:
            self._engine = self._build_engine()

    def _build_engine(self) -> Any:
        if self.backend == "jax":  # several processes: each feeds its block of the batch (process_shard)
            return keras.distribution.DataParallel(devices=self.devices, auto_shard_dataset=False)
        key = tuple(self.devices)
        if key not in _TF_STRATEGIES:  # one strategy per device set and process: a second one's collective
            import tensorflow as tf    # keys would collide with the first's (synchronized batch norm fails)

            _TF_STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=list(self.devices))
        return _TF_STRATEGIES[key]

    @property
    def process_shard(self) -> tuple[int, int]:
        """(this process, processes): which block of each global batch this process feeds."""
        if self.backend == "jax" and self.processes > 1:
            import jax

            return jax.process_index(), jax.process_count()
        return 0, 1

    @property
    def engine(self) -> Any:
        """The Keras ``DataParallel`` distribution or the ``tf.distribute`` strategy (None on one device)."""
        return self._engine

    def check_batch(self, global_batch: int) -> int:
        """The per-device batch of ``global_batch``; raises ``ValueError`` unless it divides evenly."""
        if global_batch % self.num_replicas:
            raise ValueError(f"batch_size {global_batch} (the global batch) does not split evenly over "
                             f"{self.num_replicas} devices: use a multiple of {self.num_replicas}")
        return global_batch // self.num_replicas

    @contextlib.contextmanager
    def scope(self) -> Iterator["DataParallel"]:
        """Build, compile and fit inside this context."""
        if self._engine is None:
            yield self
        else:
            with self._engine.scope():
                yield self

    def prepare_model(self, model: keras.Model) -> keras.Model:
        """TensorFlow replicas: batch normalization with the global batch's statistics."""
        if self.backend == "tensorflow" and self.num_replicas > 1:
            for layer in model._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model

    def compile_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``model.compile`` keywords for these devices: TensorFlow replicas run without XLA
        (``jit_compile=False``): XLA cannot reach a mirrored variable of another replica."""
        if self.backend == "tensorflow" and self.num_replicas > 1 and options.get("jit_compile"):
            return {**options, "jit_compile": False}
        return options

    def describe(self) -> dict[str, Any]:
        """For logs: backend, replicas, engine and devices."""
        return {"backend": self.backend, "replicas": self.num_replicas,
                "engine": type(self._engine).__name__ if self._engine is not None else None,
                "devices": [str(d) for d in self.devices]}


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[str]:
    """Sets the global Keras dtype policy (``mixed_float16`` / ``mixed_bfloat16``: layers
    compute in half precision, variables stay float32) and restores the previous one on exit.
    Losses and metrics keep computing in float32 (a Keras ``Loss``/``Metric`` casts its
    inputs to its own float32 dtype); with ``mixed_float16`` Keras wraps the optimizer in a
    ``LossScaleOptimizer``."""
    parse_precision(precision)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield precision
    finally:
        keras.config.set_dtype_policy(before)
