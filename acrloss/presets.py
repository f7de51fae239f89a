"""Where things are found: shipped models by name, the model folder, the bundled default,
and the data folders.

Models by name (``FaceAligner("mnv2_acr_300w")``, ``acrloss export NAME``) are looked up,
in this order, in:

1. ``$ACRLOSS_HOME/models`` (default ``~/.acrloss/models``): models a user adds;
2. the checkout's ``pre_trained_models/`` (only when acrloss runs from a source checkout);
3. the package's own ``acrloss/_bundled/``: the default model, installed with every wheel,
   so that ``acrloss align PHOTO`` works from any directory after ``pip install acrloss``.

Data folders (``--data-dir``) fall back to an environment variable
(``ACRLOSS_300W`` for 300-W), then to ``../shared/data/<name>`` beside the current
directory or the checkout. This module imports nothing heavy (no backend).
"""
from __future__ import annotations

import os
from pathlib import Path

#: the model ``FaceAligner()`` and ``acrloss align`` use when none is named
DEFAULT_MODEL = "ensemble_acr_300w"
#: photo-path defaults of ``FaceAligner`` and ``acrloss align``: two refine passes and flip
#: test-time averaging (6 model calls per face), chosen by detector-box NME on the fixed-seed
#: validation split (``benchmarks/generalization.py``; numbers and cost in docs/generalization.md)
DEFAULT_REFINE = 2
DEFAULT_TTA = True

PACKAGE_DIR = Path(__file__).resolve().parent
#: the bundled default model (package data; part of every wheel)
BUNDLED_DIR = PACKAGE_DIR / "_bundled"
#: the source checkout's model folder (absent in a wheel install)
CHECKOUT_MODELS = PACKAGE_DIR.parent / "pre_trained_models"

#: environment variable per dataset naming its folder
DATA_ENV = {"300w": "ACRLOSS_300W", "wflw": "ACRLOSS_WFLW", "cofw": "ACRLOSS_COFW", "aflw": "ACRLOSS_AFLW"}


def acrloss_home() -> Path:
    """``$ACRLOSS_HOME`` or ``~/.acrloss``: the user's folder for models and converted weights."""
    return Path(os.environ.get("ACRLOSS_HOME") or Path.home() / ".acrloss").expanduser()


def model_dirs() -> list[Path]:
    """The folders searched for models by name, in search order (existing or not)."""
    return [acrloss_home() / "models", CHECKOUT_MODELS, BUNDLED_DIR]


def _is_checkpoint(path: Path) -> bool:
    return path.suffix in (".h5", ".keras") and not path.name.endswith(".weights.h5")


def available_models() -> list[str]:
    """Names of the models that can be given by name (``.h5``/``.keras`` in :func:`model_dirs`)."""
    names: set[str] = set()
    for folder in model_dirs():
        if folder.is_dir():
            names.update(p.stem for p in folder.iterdir() if p.is_file() and _is_checkpoint(p))
    return sorted(names)


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint path from a file path or a model name.

    An existing file is returned as it is; a bare name (``mnv2_acr_300w`` or
    ``mnv2_acr_300w.h5``) is looked up in :func:`model_dirs`. Raises
    :class:`FileNotFoundError` naming the folders searched and the names available.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    if "/" not in name and os.sep not in name:
        stem = name[:-3] if name.endswith(".h5") else name[:-6] if name.endswith(".keras") else name
        for folder in model_dirs():
            for suffix in (".h5", ".keras"):
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    names = available_models()
    listed = ", ".join(names) if names else "none"
    searched = ", ".join(str(d) for d in model_dirs())
    raise FileNotFoundError(f"model {name!r}: no such file, and no model of that name in {searched}; "
                            f"available names: {listed}")


def model_metadata(name_or_path: str | os.PathLike) -> Path | None:
    """The JSON of settings and results beside a resolved model, if there is one."""
    meta = resolve_model(name_or_path).with_suffix(".json")
    return meta if meta.is_file() else None


def find_data_dir(dataset: str = "300w", explicit: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """A dataset folder and where it came from, or ``(None, why not)``.

    Order: ``explicit`` (must exist), the dataset's environment variable (:data:`DATA_ENV`),
    then ``../shared/data/<dataset>`` beside the current directory or the source checkout.
    """
    if explicit is not None:
        p = Path(explicit).expanduser()
        return (p, "--data-dir") if p.is_dir() else (None, f"--data-dir {explicit} is not a folder")
    env_name = DATA_ENV.get(dataset)
    env = os.environ.get(env_name) if env_name else None
    if env:
        p = Path(env).expanduser()
        return (p, env_name) if p.is_dir() else (None, f"{env_name}={env} is not a folder")
    tried = []
    for base in (Path.cwd(), PACKAGE_DIR.parent):
        p = (base / ".." / "shared" / "data" / dataset).resolve()
        if p.is_dir():
            return p, str(p)
        tried.append(str(p))
    return None, f"no --data-dir, {env_name or 'no environment variable'} unset, and none of {', '.join(tried)} exists"


def sample_image_path() -> Path:
    """matplotlib's bundled ``grace_hopper.jpg`` (a path, whatever the matplotlib version)."""
    from matplotlib import cbook  # noqa: PLC0415

    try:
        ref = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    except TypeError:  # very old/new signatures without asfileobj
        ref = cbook.get_sample_data("grace_hopper.jpg")
    if hasattr(ref, "read"):  # a file object: use its name, close it
        name = getattr(ref, "name", None)
        ref.close()
        ref = name
    if ref is None or not Path(ref).is_file():
        raise FileNotFoundError("matplotlib's sample image grace_hopper.jpg was not found; pass --image")
    return Path(ref)
