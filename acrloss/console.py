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
every CLI do so; the backend itself is imported lazily, at the first model call).
"""
from __future__ import annotations

import os

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
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _QUIET_TF_LEVEL)
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
