"""MATLAB ``.mat`` files: version 7.3 (HDF5, read with h5py) and older ones (scipy), and
images stored inside them (COFW keeps its images in cell arrays of the ``.mat``).

MATLAB stores arrays column-major; in an HDF5 (v7.3) file an ``M x N`` MATLAB matrix reads
as an ``(N, M)`` h5py dataset, so every array here is transposed back to MATLAB's shape. A
cell array is a dataset of object references, each pointing at the cell's array.

An image inside a ``.mat`` is named by a reference string ``"<file.mat>::<variable>/<i>"``
(``i`` 0-based over the cell's elements); :func:`acrloss.data_prep.images.read_image`
accepts such strings like file paths.
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from acrloss.data_prep.formats import LandmarkFileError

MAT_REF_SEP = "::"
_LOCK = threading.Lock()


def is_mat_ref(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``file.mat::variable/index`` image reference."""
    return MAT_REF_SEP in str(path)


def mat_ref(mat_path: str | os.PathLike, variable: str, index: int) -> str:
    """The reference string of element ``index`` of cell ``variable`` in ``mat_path``."""
    return f"{mat_path}{MAT_REF_SEP}{variable}/{int(index)}"


def parse_mat_ref(ref: str | os.PathLike) -> tuple[Path, str, int]:
    path, _, rest = str(ref).rpartition(MAT_REF_SEP)
    variable, _, index = rest.rpartition("/")
    try:
        return Path(path), variable, int(index)
    except ValueError:
        raise LandmarkFileError(f"{ref}: not a 'file.mat::variable/index' image reference") from None


def is_v73(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a MATLAB v7.3 (HDF5) file."""
    import h5py

    return bool(h5py.is_hdf5(str(path)))


@functools.lru_cache(maxsize=2)
def _load_v5(path: str) -> dict[str, Any]:
    from scipy.io import loadmat

    return loadmat(path)


def read_variables(path: str | os.PathLike, names: tuple[str, ...]) -> dict[str, Any]:
    """Numeric variables of a ``.mat`` file in MATLAB's shape (v7.3 via h5py, older via scipy).

    Raises:
        LandmarkFileError: naming the file when it is missing, unreadable or lacks a variable.
    """
    path = Path(path)
    if not path.is_file():
        raise LandmarkFileError(f"{path}: .mat file not found")
    out: dict[str, Any] = {}
    try:
        if is_v73(path):
            import h5py

            with _LOCK, h5py.File(path, "r") as f:
                for name in names:
                    if name not in f:
                        raise LandmarkFileError(f"{path}: no variable {name!r} (holds {sorted(f.keys())})")
                    out[name] = np.asarray(f[name]).T
        else:
            data = _load_v5(str(path))
            for name in names:
                if name not in data:
                    raise LandmarkFileError(f"{path}: no variable {name!r} (holds {sorted(k for k in data if not k.startswith('__'))})")
                out[name] = np.asarray(data[name])
    except LandmarkFileError:
        raise
    except Exception as exc:  # a corrupt or foreign file
        raise LandmarkFileError(f"{path}: cannot read as a MATLAB .mat file ({exc})") from exc
    return out


def cell_length(path: str | os.PathLike, variable: str) -> int:
    """The number of elements of cell array ``variable``."""
    path = Path(path)
    if is_v73(path):
        import h5py

        with _LOCK, h5py.File(path, "r") as f:
            if variable not in f:
                raise LandmarkFileError(f"{path}: no variable {variable!r} (holds {sorted(f.keys())})")
            return int(f[variable].size)
    return int(read_variables(path, (variable,))[variable].size)


def read_mat_image(ref: str | os.PathLike) -> np.ndarray:
    """The image array (MATLAB's ``H x W`` or ``H x W x 3``, uint8) behind a reference string."""
    path, variable, index = parse_mat_ref(ref)
    if not path.is_file():
        raise LandmarkFileError(f"{path}: .mat file not found (image {ref})")
    try:
        if is_v73(path):
            import h5py

            with _LOCK, h5py.File(path, "r") as f:
                if variable not in f:
                    raise LandmarkFileError(f"{path}: no variable {variable!r}")
                cells = f[variable][()].reshape(-1, order="F")
                if not 0 <= index < cells.size:
                    raise LandmarkFileError(f"{ref}: index out of range ({cells.size} images)")
                image = np.asarray(f[cells[index]]).T
        else:
            data = _load_v5(str(path))
            if variable not in data:
                raise LandmarkFileError(f"{path}: no variable {variable!r}")
            cells = np.asarray(data[variable]).reshape(-1, order="F")
            if not 0 <= index < cells.size:
                raise LandmarkFileError(f"{ref}: index out of range ({cells.size} images)")
            image = np.asarray(cells[index])
    except LandmarkFileError:
        raise
    except Exception as exc:
        raise LandmarkFileError(f"{ref}: cannot read the image from the .mat file ({exc})") from exc
    if image.ndim not in (2, 3) or image.size == 0:
        raise LandmarkFileError(f"{ref}: not an image (shape {image.shape})")
    return np.ascontiguousarray(image)
