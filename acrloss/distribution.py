"""Data-parallel training over several devices, and mixed precision, on the engines Keras
and TensorFlow ship (no home-made distribution layer).

* JAX backend: :class:`keras.distribution.DataParallel` over ``jax.devices()`` (GPUs when
  present, else the host CPU devices; ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
  simulates N of them). The train step is one SPMD program over the global batch: batch
  statistics and the loss are those of the whole global batch, as on one device.
* TensorFlow backend: :class:`tf.distribute.MirroredStrategy` over the GPUs (else the
  logical CPU devices); batch normalization is switched to synchronized statistics, so a
  replica normalizes with the global batch's mean and variance, as on one device.
* Several machines (:func:`initialize_multi_host`, ``docs/distributed.md``): JAX through
  ``jax.distributed`` (``KERAS_DISTRIBUTION_*``), TensorFlow through
  :class:`tf.distribute.MultiWorkerMirroredStrategy` (``TF_CONFIG`` naming several workers).
  Each process feeds its block of every global batch (``process_shard``). TensorFlow: only
  the chief (the ``chief`` task, else worker 0) writes the run folder (``writes_run_folder``).

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
import types
from typing import Any, Iterator

import keras
from keras.src.trainers.data_adapters.data_adapter import DataAdapter  # model.fit takes one as it is

from acrloss.config import AUTO_DEVICES as AUTO
from acrloss.config import PRECISIONS, parse_devices, parse_precision

__all__ = ["AUTO", "PRECISIONS", "DataParallel", "available_devices", "parse_devices", "parse_precision",
           "precision_policy", "scaled_learning_rate", "initialize_multi_host", "tf_cluster"]

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


def tf_cluster(tf_config: str | None = None) -> tuple[int, int]:
    """(this task's index, number of training tasks) of a ``TF_CONFIG`` (default: the
    environment's; (0, 1) without one). The tasks are the ``chief`` (at most one, first) then
    the ``worker`` list; ``task`` names this process's. Raises ``ValueError`` naming what is
    wrong in a malformed ``TF_CONFIG`` (not JSON, no cluster, another job such as ``ps``, a task
    outside the cluster, an address that is not ``host:port``)."""
    import json

    raw = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    if raw is None or not raw.strip():
        return 0, 1
    where = "TF_CONFIG"
    try:
        conf = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(conf, dict) or not isinstance(conf.get("cluster"), dict):
        raise ValueError(f'{where}: needs a "cluster" object, e.g. {{"cluster": {{"worker": ["host1:port", "host2:port"]}}, '
                         f'"task": {{"type": "worker", "index": 0}}}}')
    cluster = conf["cluster"]
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise ValueError(f"{where}: cluster job(s) {other}: data-parallel training uses a chief and workers only "
                         "(MultiWorkerMirroredStrategy has no parameter servers or evaluators)")
    tasks: list[tuple[str, int]] = []
    for job in ("chief", "worker"):
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit()
                                                      and a.rpartition(":")[0] for a in addresses):
            raise ValueError(f'{where}: cluster "{job}" must be a list of "host:port" addresses, got {addresses!r}')
        tasks += [(job, i) for i in range(len(addresses))]
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f'{where}: cluster "chief" lists {len(cluster["chief"])} addresses; there is at most one chief')
    if not tasks:
        raise ValueError(f"{where}: the cluster lists no worker")
    task = conf.get("task")
    if not isinstance(task, dict) or (task.get("type"), task.get("index")) not in tasks or isinstance(task.get("index"), bool):
        raise ValueError(f"{where}: task {task!r} is not one of the cluster's tasks "
                         f"({', '.join(f'{{type: {j}, index: {i}}}' for j, i in tasks)})")
    return tasks.index((task["type"], task["index"])), len(tasks)


_TF_MULTI_WORKER: dict[str, Any] = {}


def initialize_multi_host(backend: str | None = None) -> int:
    """Joins a multi-host job, before any device is used; returns the number of processes.

    JAX: when ``KERAS_DISTRIBUTION_NUM_PROCESSES`` > 1, ``keras.distribution.initialize()``
    (``jax.distributed.initialize``) with ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator
    first) and ``KERAS_DISTRIBUTION_PROCESS_ID``. TensorFlow: a ``TF_CONFIG`` naming more than
    one task (:func:`tf_cluster`) creates the process's
    :class:`tf.distribute.MultiWorkerMirroredStrategy`, which waits for every task (it must
    come before anything else starts TensorFlow's runtime).
    """
    backend = backend or keras.backend.backend()
    if backend == "tensorflow":
        count = tf_cluster()[1]
        if count > 1 and os.environ["TF_CONFIG"] not in _TF_MULTI_WORKER:
            import tensorflow as tf

            _TF_MULTI_WORKER.clear()  # one per process: TensorFlow configures its collectives once
            try:
                _TF_MULTI_WORKER[os.environ["TF_CONFIG"]] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as exc:
                raise RuntimeError(f"TF_CONFIG names {count} tasks, but TensorFlow's runtime started in this process "
                                   f"before its multi-worker strategy could be made ({exc}): create the "
                                   "DataParallel (or call initialize_multi_host) before any TensorFlow op") from exc
        return count
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
        self._engine: Any = None
        if self.backend == "tensorflow" and self.processes > 1:  # MultiWorkerMirroredStrategy (TF_CONFIG)
            strategy = _TF_MULTI_WORKER[os.environ["TF_CONFIG"]]
            self.devices = list(strategy.extended.worker_devices)  # this worker's
            self.num_replicas = int(strategy.num_replicas_in_sync)  # every worker's
            if asked != AUTO and asked != self.num_replicas:
                raise ValueError(f"devices={asked}: the {self.processes} TensorFlow workers of TF_CONFIG have "
                                 f"{self.num_replicas} device(s) together ({', '.join(self.devices)} here) and use "
                                 f"them all: give devices='auto' or {self.num_replicas}")
            self._engine = strategy
            return
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
    def _tf_multi_worker(self) -> bool:
        return self.backend == "tensorflow" and self.processes > 1

    @property
    def process_shard(self) -> tuple[int, int]:
        """(this process, processes): which block of each global batch this process feeds."""
        if self.backend == "jax" and self.processes > 1:
            import jax

            return jax.process_index(), jax.process_count()
        if self._tf_multi_worker:
            return tf_cluster()
        return 0, 1

    @property
    def writes_run_folder(self) -> bool:
        """Whether this process writes the run folder: TensorFlow multi-worker, only the chief
        (task 0 of :func:`tf_cluster`); every JAX process writes its own (host-local) folder."""
        return not self._tf_multi_worker or self.process_shard[0] == 0

    def feed(self, data: Any) -> Any:
        """What ``model.fit`` gets for ``data``, a ``keras.utils.PyDataset`` of this process's
        block of every global batch. TensorFlow multi-worker: an adapter that hands each
        worker's blocks to its own replicas as they are (``distribute_datasets_from_function``;
        ``fit``'s default would treat them as whole global batches and split them again)."""
        if not self._tf_multi_worker or data is None:
            return data
        return _WorkerBlocks(data, self._engine)

    def gather(self, value: int) -> list[int]:
        """Every process's ``value``, in process order (a collective: every process must call
        it); ``[value]`` in one process. Used to make sure the workers agree before training."""
        if not self._tf_multi_worker:
            return [int(value)]
        import tensorflow as tf

        per_replica = self._engine.experimental_distribute_values_from_function(
            lambda context: tf.constant([int(value)], tf.int64))
        values = self._engine.gather(per_replica, axis=0).numpy().tolist()
        return [int(v) for v in values[:: len(self.devices)]]  # replicas are numbered worker by worker

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
        elif self._tf_multi_worker:
            with self._engine.scope(), _first_replica_step_logs():
                yield self
        else:
            with self._engine.scope():
                yield self

    def prepare_model(self, model: keras.Model) -> keras.Model:
        """TensorFlow replicas: batch normalization with the global batch's statistics;
        multi-worker: the first batch builds the model from this worker's values (see
        :func:`_build_from_local_batch`)."""
        if self.backend == "tensorflow" and self.num_replicas > 1:
            for layer in model._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        if self._tf_multi_worker:
            model._maybe_symbolic_build = types.MethodType(_build_from_local_batch, model)
        return model

    def compile_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``model.compile`` keywords for these devices: TensorFlow replicas run without XLA
        (``jit_compile=False``): XLA cannot reach a mirrored variable of another replica."""
        if self.backend == "tensorflow" and self.num_replicas > 1 and options.get("jit_compile"):
            return {**options, "jit_compile": False}
        return options

    def describe(self) -> dict[str, Any]:
        """For logs: backend, replicas, engine and devices."""
        engine = type(self._engine).__name__ if self._engine is not None else None
        if self._tf_multi_worker:  # tf.distribute.MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy
            engine = "MultiWorkerMirroredStrategy"
        return {"backend": self.backend, "replicas": self.num_replicas, "engine": engine,
                "devices": [str(d) for d in self.devices]}


# -- TensorFlow multi-worker: what Keras 3's TensorFlow trainer lacks for MultiWorkerMirroredStrategy
# (keras 3.15 / TF 2.21; tensorflow/tensorflow#72388). Each piece is tested by
# tests/test_distribution.py::test_two_tf_workers_on_one_machine_match_one_device.
def _build_from_local_batch(model: keras.Model, iterator: Any = None, data_batch: Any = None) -> None:
    """``TensorFlowTrainer._maybe_symbolic_build`` building from the first batch's local
    value: Keras reduces the whole nested batch with one ``strategy.reduce`` (to learn its
    shapes), which ``MultiWorkerMirroredStrategy`` refuses ("Attempt to convert a value
    (PerReplica...) to a Tensor")."""
    import tensorflow as tf

    strategy = model.distribute_strategy
    if iterator is not None:
        for _, _, it in iterator:
            data_batch = keras.tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v,
                next(it))
            break
    with strategy.scope():
        model._symbolic_build(data_batch=data_batch)


@contextlib.contextmanager
def _first_replica_step_logs() -> Iterator[None]:
    """Keras reduces a train / test step's logs across workers with ``strategy.reduce("MEAN",
    v, axis=0)``, which fails on the scalar logs ("Invalid reduction dimension 0 for input with
    0 dimensions"); here a multi-worker step returns its first local replica's logs instead.
    The epoch logs (history, checkpoints, ``best.h5``) do not come from there: Keras reads
    them from the metrics' synchronized variables, summed over every replica of every worker."""
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction == "auto" and trainer._collective_all_reduce_multi_worker(strategy):
            reduction = "first"
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer.reduce_per_replica = original


def _split_batches(dataset: Any, parts: int) -> Any:
    """Each batch of a ``tf.data`` dataset as ``parts`` consecutive equal batches (the
    per-replica batches of a worker with ``parts`` devices)."""
    import tensorflow as tf

    def split(*batch: Any) -> Any:
        batch = batch if len(batch) > 1 else batch[0]
        return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
            lambda x: tf.reshape(x, tf.concat([[parts, -1], tf.shape(x)[1:]], 0)), batch))

    return dataset.flat_map(split) if parts > 1 else dataset


class _WorkerBlocks(DataAdapter):
    """A Keras data adapter over a ``PyDataset`` of this worker's blocks: ``fit`` gets a
    ``strategy.distribute_datasets_from_function`` dataset, so the worker's local replicas
    take its block as it is (split evenly when it has several devices)."""

    def __init__(self, data: Any, strategy: Any) -> None:
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        self.inner = PyDatasetAdapter(data, shuffle=False)
        self.strategy = strategy

    def get_tf_dataset(self) -> Any:
        import tensorflow as tf

        options = tf.data.Options()  # the blocks are this worker's already
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = _split_batches(self.inner.get_tf_dataset().with_options(options), len(self.strategy.extended.worker_devices))
        return self.strategy.distribute_datasets_from_function(lambda context: dataset)

    def get_numpy_iterator(self) -> Any:
        return self.inner.get_numpy_iterator()

    @property
    def num_batches(self) -> int | None:
        return self.inner.num_batches

    @property
    def batch_size(self) -> int | None:
        return self.inner.batch_size

    @property
    def has_partial_batch(self) -> bool | None:
        return self.inner.has_partial_batch

    @property
    def partial_batch_size(self) -> int | None:
        return self.inner.partial_batch_size

    def on_epoch_begin(self) -> None:
        self.inner.on_epoch_begin()

    def on_epoch_end(self) -> None:
        self.inner.on_epoch_end()


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
