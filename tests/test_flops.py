"""Multiply-add counter (acrloss.flops): expected numbers are worked out by hand from the
formulas in the module docstring, never copied from the counter's output."""
from __future__ import annotations

import json

import keras
import pytest

from acrloss.flops import count_macs, count_params, main

# Input(8,8,3) -> Conv2D(4, 3, same) -> DepthwiseConv2D(3, stride 2, same) -> Flatten -> Dense(5)
SMALL_CONV = 8 * 8 * 4 * (3 * 3 * 3)  # H_out*W_out*C_out*(k_h*k_w*C_in)
SMALL_DW = 4 * 4 * 4 * (3 * 3)  # H_out*W_out*C_in*k_h*k_w (depth_multiplier 1)
SMALL_DENSE = (4 * 4 * 4) * 5  # in*out
SMALL_TOTAL = SMALL_CONV + SMALL_DW + SMALL_DENSE


def small_layers():
    return [
        keras.layers.Conv2D(4, 3, padding="same", name="conv"),
        keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(5, name="fc"),
    ]


def small_functional(name="small"):
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for layer in small_layers():
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def test_small_functional_exact():
    macs, rows = count_macs(small_functional(), per_layer=True)
    assert macs == SMALL_TOTAL == 7808
    assert count_macs(small_functional()) == SMALL_TOTAL
    by_name = {r["name"]: r for r in rows}
    assert by_name["conv"]["macs"] == SMALL_CONV and by_name["conv"]["class"] == "Conv2D"
    assert by_name["dw"]["macs"] == SMALL_DW and by_name["dw"]["class"] == "DepthwiseConv2D"
    assert by_name["flat"]["macs"] == 0
    assert by_name["fc"]["macs"] == SMALL_DENSE
    assert not any("note" in r for r in rows)


def test_small_sequential_exact():
    seq = keras.Sequential([keras.Input((8, 8, 3))] + small_layers())
    assert count_macs(seq) == SMALL_TOTAL


def test_nested_model_same_count():
    inner = small_functional("inner")
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, keras.layers.ReLU()(inner(inputs)), name="outer")
    macs, rows = count_macs(outer, per_layer=True)
    assert macs == SMALL_TOTAL
    assert {r["name"]: r["macs"] for r in rows}["inner/conv"] == SMALL_CONV
    # a Sequential used as a layer, two levels deep
    seq = keras.Sequential([keras.Input((8, 8, 3))] + small_layers())
    mid_in = keras.Input((8, 8, 3))
    mid = keras.Model(mid_in, seq(mid_in))
    top_in = keras.Input((8, 8, 3))
    assert count_macs(keras.Model(top_in, mid(top_in))) == SMALL_TOTAL


def test_inner_model_counted_at_the_size_it_is_called_with():
    inner_in = keras.Input((None, None, 3))
    inner = keras.Model(inner_in, keras.layers.Conv2D(4, 3, padding="same")(inner_in))
    inputs = keras.Input((16, 16, 3))
    assert count_macs(keras.Model(inputs, inner(inputs))) == 16 * 16 * 4 * (3 * 3 * 3)


def test_shared_layer_counted_per_call():
    shared = keras.layers.Dense(4)
    inputs = keras.Input((4,))
    assert count_macs(keras.Model(inputs, shared(shared(inputs)))) == 2 * (4 * 4)


def test_other_layer_formulas():
    inputs = keras.Input((5, 5, 4))
    sep = keras.layers.SeparableConv2D(8, 3, depth_multiplier=2)(inputs)  # valid: 3x3 out
    tconv = keras.layers.Conv2DTranspose(6, 3, strides=2)(inputs)
    grouped = keras.layers.Conv2D(8, 3, groups=2)(inputs)  # valid: 3x3 out
    seq = keras.layers.Dense(7)(keras.layers.Reshape((25, 4))(inputs))
    model = keras.Model(inputs, [sep, tconv, grouped, seq])
    macs, rows = count_macs(model, per_layer=True)
    expected = {
        "SeparableConv2D": 3 * 3 * (4 * 2) * (3 * 3) + 3 * 3 * (4 * 2) * 8,  # depthwise + pointwise
        "Conv2DTranspose": 5 * 5 * 4 * 6 * (3 * 3),  # H_in*W_in*C_in*C_out*k_h*k_w
        "Conv2D": 3 * 3 * 8 * (3 * 3 * 4 // 2),
        "Dense": 25 * 4 * 7,  # leading dims * in * out
    }
    assert {r["class"]: r["macs"] for r in rows if r["macs"]} == expected
    assert macs == sum(expected.values())


def test_unknown_layer_with_weights_is_reported():
    inputs = keras.Input((4, 8))
    out = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inputs, inputs)
    out = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(3, name="fc")(out))
    macs, rows = count_macs(keras.Model(inputs, out), per_layer=True)
    assert macs == 4 * 8 * 3
    notes = {r["name"]: r.get("note") for r in rows}
    assert notes == {"mha": "not counted", "fc": None, "bn": None}


def test_mobilenet_v2_matches_published_figures():
    net = keras.applications.MobileNetV2(alpha=1.0, include_top=True, weights=None, input_shape=(224, 224, 3))
    assert abs(count_macs(net) - 300e6) <= 0.03 * 300e6  # MobileNetV2 paper, Table: 300M
    assert count_params(net) == net.count_params()
    assert abs(count_params(net) - 3.4e6) <= 0.05 * 3.4e6  # paper: 3.4M
    small = keras.applications.MobileNetV2(alpha=0.35, include_top=True, weights=None, input_shape=(224, 224, 3))
    assert abs(count_macs(small) - 59e6) <= 0.05 * 59e6  # paper: 59M at 0.35 / 224


def test_regressor_is_backbone_plus_head():
    from acrloss.models import build_backbone, build_regressor

    reg = build_regressor("mnv2", input_size=128)
    backbone = build_backbone("mnv2", 128)
    assert count_macs(reg) == count_macs(backbone) + 1280 * 136  # GAP -> Dense(2 * 68)
    # and the backbone itself: first conv 3x3/2 of 3->32 channels on a 64x64 output
    _, rows = count_macs(backbone, per_layer=True)
    assert rows[1]["name"].endswith("/Conv1") and rows[1]["macs"] == 64 * 64 * 32 * (3 * 3 * 3)


def test_unknown_spatial_dims_raise():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match="fixed input size"):
        count_macs(model)
    with pytest.raises(ValueError, match="built"):
        count_macs(keras.Sequential([keras.layers.Dense(3)]))  # no inputs yet


def test_cli(tmp_path, capsys):
    path = tmp_path / "small.h5"
    small_functional().save(path)
    assert main([str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    params = (3 * 3 * 3 * 4 + 4) + (3 * 3 * 4 + 4) + (64 * 5 + 5)  # kernels + biases
    assert out == {"macs": SMALL_TOTAL, "mmacs": round(SMALL_TOTAL / 1e6, 3), "params": params}
    assert main([str(tmp_path / "missing.h5")]) == 2
