"""Multiply-add (MAC) and parameter counts of a Keras model, for ONE input sample.

The count is read from layer metadata (shapes, kernel sizes): nothing is executed, no
backend-specific profiler is used, and it works the same under every Keras backend.

Counting rules (``H, W`` spatial size, ``C`` channels, ``k_h x k_w`` kernel; for 1-D
and 3-D layers the products run over all spatial axes):

* ``Conv1D/2D/3D``: ``H_out * W_out * C_out * (k_h * k_w * C_in / groups)``
* ``DepthwiseConv1D/2D``: ``H_out * W_out * C_in * depth_multiplier * k_h * k_w``
* ``SeparableConv1D/2D``: depthwise as above plus the pointwise ``1x1`` convolution
  ``H_out * W_out * (C_in * depth_multiplier) * C_out``
* ``Conv1D/2D/3DTranspose``: ``H_in * W_in * C_in * C_out * k_h * k_w`` (every input
  pixel is scattered through the whole kernel)
* ``Dense``: ``(product of the leading non-batch dims) * in * out``
* everything else -- batch/layer normalization, activations, pooling, add, multiply,
  rescaling, normalization, reshape, dropout, padding, ... -- is 0: only the
  multiply-adds of convolution and dense layers are counted, as papers do. Biases are
  not counted.

A custom layer may count itself: a method ``mac_count(input_shapes, output_shapes) -> int``
(lists of the layer's input and output shapes, batch dimension 1) replaces the rules above
for that layer (e.g. :class:`acrloss.models.musica.PatchSampler`: 4 per bilinear sample).

Layers that do real multiply-adds but are not covered above (any other layer with
weights, e.g. ``EinsumDense``, ``MultiHeadAttention``, RNNs, a subclassed model; or a
weightless ``Dot``/``Attention`` layer or ``keras.ops.matmul`` node) count 0, and
appear in the per-layer report with ``"note": "not counted"`` so that nothing is
silently wrong.

Nested models (a ``keras.applications`` backbone used as a layer, a ``Sequential``
inside a functional model, ...) are walked recursively. Shapes are propagated from the
outer model's inputs (batch size 1) through every graph node, so a layer called twice
is counted twice and an inner model built for another size is counted at the size it is
actually called with. Spatial dimensions must be known: a model built with
``Input((None, None, 3))`` raises :class:`ValueError`.

Command line: ``python -m acrloss.flops MODEL.h5 [--per-layer]`` prints
``{"macs": ..., "mmacs": ..., "params": ...}`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import keras

__all__ = ["count_macs", "count_params", "main"]

#: layers with weights whose multiply-adds are 0 by the rules above (not "unknown")
_ZERO_MAC_WITH_WEIGHTS = frozenset(
    {
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "RMSNormalization",
        "Normalization",
        "Embedding",
        "PReLU",
    }
)

#: weightless layers or ops that nevertheless multiply-add (not counted: reported)
_WEIGHTLESS_WITH_MACS = frozenset(
    {
        "Dot",
        "Attention",
        "AdditiveAttention",
        # keras.ops nodes in a functional graph
        "Matmul",
        "Einsum",
        "Tensordot",
        "Conv",
        "DepthwiseConv",
        "SeparableConv",
        "ConvTranspose",
    }
)

_CONV = ("Conv1D", "Conv2D", "Conv3D")
_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
_SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
_TRANSPOSE = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")


def _mro_names(op: Any) -> list[str]:
    """Class names of ``op`` and its bases: a subclass of ``Conv2D`` counts as one."""
    return [cls.__name__ for cls in type(op).__mro__]


def _known(shape: tuple, what: str, path: str) -> tuple[int, ...]:
    """``shape`` without its batch dim, every entry an int; ValueError otherwise."""
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(
            f"{path}: unknown dimension in {what} shape {tuple(shape)}; count_macs needs a model "
            "built with a fixed input size, e.g. keras.Input((224, 224, 3))"
        )
    return tuple(int(d) for d in dims)


def _spatial(dims: tuple[int, ...], data_format: str | None) -> tuple[tuple[int, ...], int]:
    """(spatial dims, channels) of a non-batch shape."""
    if data_format == "channels_first":
        return dims[1:], dims[0]
    return dims[:-1], dims[-1]


def _leaf_macs(op: Any, in_shape: tuple, out_shape: tuple, path: str) -> tuple[int, str | None]:
    """(multiply-adds, note) of a non-model layer or op, from its first input and output."""
    names = _mro_names(op)
    cls = type(op).__name__
    data_format = getattr(op, "data_format", None)

    def prod(xs) -> int:
        return int(math.prod(int(x) for x in xs))

    if any(n in _SEPARABLE for n in names):
        (sp_out, c_out) = _spatial(_known(out_shape, "output", path), data_format)
        (_, c_in) = _spatial(_known(in_shape, "input", path), data_format)
        k = prod(op.kernel_size)
        mid = c_in * int(op.depth_multiplier)
        return prod(sp_out) * (mid * k + mid * c_out), None
    if any(n in _DEPTHWISE for n in names):
        (sp_out, _) = _spatial(_known(out_shape, "output", path), data_format)
        (_, c_in) = _spatial(_known(in_shape, "input", path), data_format)
        return prod(sp_out) * c_in * int(op.depth_multiplier) * prod(op.kernel_size), None
    if any(n in _TRANSPOSE for n in names):
        (sp_in, c_in) = _spatial(_known(in_shape, "input", path), data_format)
        (_, c_out) = _spatial(_known(out_shape, "output", path), data_format)
        return prod(sp_in) * c_in * c_out * prod(op.kernel_size), None
    if any(n in _CONV for n in names):
        (sp_out, c_out) = _spatial(_known(out_shape, "output", path), data_format)
        (_, c_in) = _spatial(_known(in_shape, "input", path), data_format)
        groups = int(getattr(op, "groups", 1) or 1)
        return prod(sp_out) * c_out * prod(op.kernel_size) * (c_in // groups), None
    if "Dense" in names:
        dims = _known(in_shape, "input", path)
        units = int(op.units)
        return prod(dims[:-1]) * dims[-1] * units, None
    has_weights = bool(getattr(op, "weights", None))
    if (has_weights and not any(n in _ZERO_MAC_WITH_WEIGHTS for n in names)) or cls in _WEIGHTLESS_WITH_MACS:
        return 0, "not counted"
    return 0, None


def _shape_of(x: Any) -> tuple:
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else ()


def _first_tensor(args: tuple, kwargs: dict) -> Any:
    flat = keras.tree.flatten((args, kwargs))
    for x in flat:
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            return x
    return None


def _same_shapes(a: list, b: list) -> bool:
    """Equal non-batch shapes, element by element."""
    return len(a) == len(b) and all(_shape_of(x)[1:] == _shape_of(y)[1:] for x, y in zip(a, b))


def _is_functional(op: Any) -> bool:
    return isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth") and not isinstance(op, keras.Sequential)


def _call(op: Any, args: tuple, kwargs: dict, path: str, rows: list, node: Any = None) -> list:
    """Output specs (flat list) of ``op`` applied to ``args``; appends per-layer rows."""
    if isinstance(op, keras.Sequential):
        x = args[0] if args else kwargs.get("inputs")
        for layer in op.layers:
            outs = _call(layer, (x,), {}, f"{path}/{layer.name}", rows)
            x = outs[0] if len(outs) == 1 else outs
        return keras.tree.flatten(x)
    if _is_functional(op):
        inputs = args[0] if args else kwargs.get("inputs")
        return _walk_functional(op, keras.tree.flatten(inputs), path, rows)

    # a leaf layer / op: reuse the shapes recorded when the graph was built when they
    # match, otherwise infer the output spec (no computation happens)
    in_flat = [x for x in keras.tree.flatten((args, kwargs)) if hasattr(x, "shape") and hasattr(x, "dtype")]
    if node is not None and _same_shapes(in_flat, list(node.input_tensors)):
        outputs = list(node.outputs)
    else:
        outputs = keras.tree.flatten(op.compute_output_spec(*args, **kwargs))
    first_in = _first_tensor(args, kwargs)
    hook = getattr(op, "mac_count", None)
    if callable(hook):  # a custom layer that counts itself (see the module docstring)
        macs, note = int(hook([_shape_of(x) for x in in_flat], [_shape_of(x) for x in outputs])), None
    else:
        macs, note = _leaf_macs(
            op, _shape_of(first_in) if first_in is not None else (), _shape_of(outputs[0]) if outputs else (), path
        )
    row: dict[str, Any] = {"name": path, "class": type(op).__name__, "macs": int(macs)}
    if note:
        row["note"] = note
    rows.append(row)
    return outputs


def _walk_functional(model: Any, inputs: list, path: str, rows: list) -> list:
    """Propagate ``inputs`` (flat specs) through a functional graph, depth by depth."""
    tensors: dict[int, Any] = {id(ref): x for ref, x in zip(model.inputs, inputs)}
    by_depth = model._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            if any(id(x) not in tensors for x in node.input_tensors):
                continue  # belongs to another graph sharing this operation
            args, kwargs = node.arguments.fill_in(tensors)
            name = getattr(node.operation, "name", type(node.operation).__name__)
            prefix = f"{path}/{name}" if path else name
            outputs = _call(node.operation, args, kwargs, prefix, rows, node=node)
            for ref, x in zip(node.outputs, outputs):
                tensors[id(ref)] = x
    missing = [x for x in model.outputs if id(x) not in tensors]
    if missing:
        raise ValueError(f"{path or model.name}: cannot trace the graph to its outputs {missing}")
    return [tensors[id(x)] for x in model.outputs]


def count_macs(model: keras.Model, per_layer: bool = False) -> int | tuple[int, list[dict]]:
    """Multiply-adds of ``model`` for one input sample (batch 1); see the module docstring
    for the rules. ``per_layer=True`` also returns one ``{"name", "class", "macs"}`` dict
    per layer or op call (``name`` is the path through nested models; ``"note":
    "not counted"`` marks a layer whose multiply-adds are unknown to these rules).

    Raises ValueError when the model has no defined inputs (unbuilt or subclassed) or
    when a spatial dimension is unknown.
    """
    try:
        refs = list(model.inputs)
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"{model.name}: count_macs needs a built functional or Sequential model ({exc})") from exc
    if not refs:
        raise ValueError(f"{model.name}: count_macs needs a built functional or Sequential model")
    specs = []
    for ref in refs:
        _known(tuple(ref.shape), "input", f"{model.name}/{getattr(ref, 'name', 'input')}")
        specs.append(keras.KerasTensor((1,) + tuple(ref.shape)[1:], dtype=ref.dtype))
    rows: list[dict] = []
    if isinstance(model, keras.Sequential):
        x = specs[0]
        for layer in model.layers:
            outs = _call(layer, (x,), {}, layer.name, rows)
            x = outs[0] if len(outs) == 1 else outs
    elif _is_functional(model):
        _walk_functional(model, specs, "", rows)
    else:
        raise ValueError(f"{model.name}: count_macs needs a functional or Sequential model, got {type(model).__name__}")
    total = int(sum(r["macs"] for r in rows))
    return (total, rows) if per_layer else total


def count_params(model: keras.Model) -> int:
    """Trainable plus non-trainable parameters (each shared variable once)."""
    return int(sum(math.prod(int(d) for d in w.shape) for w in model.weights))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m acrloss.flops", description="Multiply-adds (one sample) and parameters of a model checkpoint."
    )
    parser.add_argument("model", help="a .h5 / .keras checkpoint")
    parser.add_argument("--per-layer", action="store_true", help="also list every layer's multiply-adds")
    args = parser.parse_args(argv)
    from acrloss.models import load_model

    try:
        model = load_model(args.model)
        macs, rows = count_macs(model, per_layer=True)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"macs": macs, "mmacs": round(macs / 1e6, 3), "params": count_params(model)}
    if args.per_layer:
        out["layers"] = rows
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
