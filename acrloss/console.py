"""A quiet console: backend (TensorFlow C++, absl, ``tensorflow`` logger) messages are hidden
unless asked for.

Every ``acrloss`` entry point prints only its own output. Backend logs (TensorFlow's
oneDNN / CPU-feature notices, absl warnings such as "No training configuration found in the
save file") are shown with ``--verbose`` (``acrloss --verbose ...``, ``acrloss align
--verbose``, ``python -m acrloss.demo --verbose``) or, for any entry point, with the
environment variable ``ACRLOSS_VERBOSE=1``. An explicit ``TF_CPP_MIN_LOG_LEVEL`` in the
environment is respected in quiet mode.

TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, when it is imported: :func:`set_backend_logs`
must run before the first backend import to affect the C++ messages (``import acrloss`` and
every CLI do so; the backend itself is imported lazily, at the first model call). TensorFlow
2.20+ logs its oneDNN notice through absl before that level applies, so in quiet mode the
first ``import tensorflow`` also runs with the process's stderr (file descriptor 2) sent to
the null device (:class:`QuietBackendImport`); Python exceptions still propagate.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
from typing import Any, Iterator

#: environment variable that turns backend logs on for every entry point ("1", "true", "yes")
VERBOSE_ENV = "ACRLOSS_VERBOSE"
_QUIET_TF_LEVEL = "3"  # TensorFlow C++: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR


def verbose_from_env() -> bool:
    """Whether ``ACRLOSS_VERBOSE`` asks for backend logs."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def set_backend_logs(verbose: bool | None = None, python_loggers: bool = True) -> None:
    """Quiet (default) or show the backend's logs; ``verbose=None`` reads ``ACRLOSS_VERBOSE``.

    Quiet: ``TF_CPP_MIN_LOG_LEVEL=3`` unless the environment already sets it and, with
    ``python_loggers``, the ``tensorflow`` and absl Python loggers at ERROR. Verbose:
    ``TF_CPP_MIN_LOG_LEVEL=0`` and both loggers at INFO. Imports neither TensorFlow nor JAX
    (absl, which is light, only with ``python_loggers``). ``import acrloss`` calls it once
    (quiet unless ``ACRLOSS_VERBOSE=1``); the command-line tools call it again after parsing
    ``--verbose``. A library user who wants the backend's logs sets ``ACRLOSS_VERBOSE=1`` or
    calls ``set_backend_logs(True)`` before the first model is built.
    """
    if verbose is None:
        verbose = verbose_from_env()
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        QuietBackendImport.uninstall()
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _QUIET_TF_LEVEL)
        if os.environ["TF_CPP_MIN_LOG_LEVEL"] == _QUIET_TF_LEVEL:
            QuietBackendImport.install()
    if not python_loggers:
        return
    import logging  # noqa: PLC0415  (not at import: ``import acrloss`` stays light)

    level = logging.INFO if verbose else logging.ERROR
    logging.getLogger("tensorflow").setLevel(level)  # a plain logger: safe to create before TensorFlow does
    try:  # absl's logger must be created by absl itself (ABSLLogger)
        from absl import logging as absl_logging  # noqa: PLC0415
    except ImportError:  # pragma: no cover - absl comes with TensorFlow and JAX
        return
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.ERROR)


@contextlib.contextmanager
def stderr_to_null() -> Iterator[None]:
    """Send the process's file descriptor 2 (C/C++ and Python stderr alike) to the null
    device within the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's ``exec_module`` inside :func:`stderr_to_null`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with stderr_to_null():
            self.inner.exec_module(module)
        module.__loader__ = self.inner  # the module keeps its own loader (resources, reload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class QuietBackendImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: the first ``import tensorflow`` runs with stderr silenced (its
    C++ start-up notices ignore ``TF_CPP_MIN_LOG_LEVEL``), then the hook removes itself.
    Installed by :func:`set_backend_logs` in quiet mode while TensorFlow is not yet imported."""

    module = "tensorflow"

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.module:
            return None
        self.uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec

    @classmethod
    def install(cls) -> None:
        """Add the hook (once), unless TensorFlow is already imported."""
        if cls.module in sys.modules or any(isinstance(f, cls) for f in sys.meta_path):
            return
        sys.meta_path.insert(0, cls())

    @classmethod
    def uninstall(cls) -> None:
        """Remove the hook if it is there."""
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, cls)]
