"""Timing helpers shared by the benchmarks (``benchmarks/decode_speed.py``, ``benchmarks/keyposs.py``):
pinning the backends' CPU threads, compiling a function the backend's way, and waiting for a
result. Imports nothing of acrloss; the backends are imported only when asked for."""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np


def pin_threads(n: int) -> None:
    """Limit TensorFlow's and XLA's CPU threads to ``n`` (call before the backend is imported)."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(n))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(n))
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def compiler(backend: str) -> Callable[[Callable], Callable] | None:
    """``tf.function`` (TensorFlow) or ``jax.jit`` (jax) as a decorator; ``None`` for other backends."""
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        return lambda f: tf.function(f, reduce_retracing=True)
    if backend == "jax":
        import jax  # noqa: PLC0415

        return jax.jit
    return None


def block(x: Any) -> None:
    """Wait until ``x`` is computed (jax arrays are asynchronous)."""
    if hasattr(x, "block_until_ready"):
        x.block_until_ready()
    else:
        np.asarray(x)
