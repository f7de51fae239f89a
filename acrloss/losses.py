"""Landmark losses: ACR (Adaptive Coordinate-based Regression), L2 and L1 on coordinates, the
MuSiCa cascade loss, and the heatmap MSE (:class:`HeatmapMSE`, on heatmaps).

Only :mod:`keras.ops` is used, so every loss runs on any Keras 3 backend.

Packing of ``y_true``
---------------------
All coordinate losses take ``y_true`` of shape ``(B, 2·num_coords)``: the first ``num_coords``
columns are the target coordinates ``[x0, y0, x1, y1, ...]``, the last ``num_coords``
the per-coordinate difficulty ``Φ ∈ [0, 1]`` (see :func:`acrloss.pca_utility.difficulty`).
:class:`L2Loss` and :class:`L1Loss` ignore ``Φ`` and also accept ``y_true`` of width
``num_coords``. ``y_pred`` has shape ``(B, num_coords)``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import keras
from keras import ops

from acrloss.config import COORDINATE_LOSSES
from acrloss.metrics import face_nme, norm_config, parse_norm

__all__ = ["ACRLoss", "L2Loss", "L1Loss", "CascadeLoss", "HeatmapMSE", "get_loss", "LOSS_NAMES"]

#: the coordinate losses of :func:`get_loss`
LOSS_NAMES = tuple(n.value for n in COORDINATE_LOSSES)


def _static_width(x: Any) -> int | None:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) == 0:
        return None
    w = shape[-1]
    return None if w is None else int(w)


def _split_targets(y_true: Any, y_pred: Any, num_coords: int, need_phi: bool, loss_name: str):
    """Return ``(points, phi or None)`` after checking the (static) widths."""
    w_true, w_pred = _static_width(y_true), _static_width(y_pred)
    if w_pred is not None and w_pred != num_coords:
        raise ValueError(f"{loss_name}: y_pred has {w_pred} columns; expected num_coords={num_coords}")
    allowed = (2 * num_coords,) if need_phi else (num_coords, 2 * num_coords)
    if w_true is not None and w_true not in allowed:
        raise ValueError(
            f"{loss_name}: y_true has {w_true} columns; expected "
            + (" or ".join(str(a) for a in allowed))
            + f" (num_coords={num_coords}; packed as [points, phi])"
        )
    points = y_true[..., :num_coords]
    phi = y_true[..., num_coords : 2 * num_coords] if need_phi else None
    return points, phi


@keras.saving.register_keras_serializable(package="acrloss")
class ACRLoss(keras.losses.Loss):
    r"""Adaptive Coordinate-based Regression loss.

    With ``e = y_true_points - y_pred`` and the difficulty ``Φ`` of each coordinate::

        ACR(e) = λ · ln(1 + |e|^(2 - Φ))     if |e| <= 1
        ACR(e) = e² + C                       otherwise,   C = λ · ln 2 - 1

    where ``e = scale · (y_true_points - y_pred)``. Coordinates are normalized to
    [-0.5, 0.5] of the crop (:mod:`acrloss.data_prep.crop`), so with ``scale = 1`` every
    error lies in the logarithmic branch and ``λ`` is only a constant factor (which Adam
    cancels). ``scale = s`` moves the switch to the quadratic branch to an error of
    ``1/s`` of the crop side and makes ``λ`` set the balance between the two branches.

    ``C`` makes the loss continuous at ``|e| = 1`` (both sides equal ``λ ln 2``).
    ``Φ = 0`` (an easy coordinate, close to its Smooth-Face) gives
    ``ln(1 + e²) ≈ e²`` for small ``e``: L2-like, gentle near zero. ``Φ = 1`` (a hard
    coordinate) gives ``ln(1 + |e|) ≈ |e|``: L1-like, keeps pushing small errors.

    The per-sample value is the mean over the ``num_coords`` coordinates (shape
    ``(B,)``), then reduced by ``reduction``.

    ``y_true`` has shape ``(B, 2·num_coords)``: the target coordinates followed by
    ``Φ``; ``y_pred`` has shape ``(B, num_coords)``.

    Both branches are evaluated on clamped arguments and ``|e|^(2-Φ)`` is computed as
    ``exp((2-Φ)·ln|e|)`` guarded at ``e = 0``, so gradients are finite everywhere.

    Args:
        lambda_: the weight ``λ`` (> 0) of the logarithmic branch.
        scale: the factor ``s`` (> 0) applied to the coordinate errors before the loss.
        num_coords: ``2N``, the number of predicted coordinates.
        name: loss name.
        reduction: Keras reduction over the batch.
        dtype: Keras loss dtype.
    """

    def __init__(self, lambda_: float = 1.0, num_coords: int = 136, name: str = "acr_loss",
                 reduction: str | None = "sum_over_batch_size", dtype: Any = None,
                 scale: float = 1.0) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not lambda_ > 0:
            raise ValueError(f"lambda_ must be > 0, got {lambda_!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        if int(num_coords) <= 0:
            raise ValueError(f"num_coords must be positive, got {num_coords!r}")
        self.lambda_ = float(lambda_)
        self.num_coords = int(num_coords)

    @property
    def offset(self) -> float:
        """``C = λ·ln 2 − 1``, the constant of the quadratic branch."""
        return self.lambda_ * math.log(2.0) - 1.0

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-sample ACR loss, shape ``(B,)``."""
        points, phi = _split_targets(y_true, y_pred, self.num_coords, True, "ACRLoss")
        points = ops.cast(points, y_pred.dtype)
        phi = ops.clip(ops.cast(phi, y_pred.dtype), 0.0, 1.0)
        a = ops.abs(points - y_pred)
        if self.scale != 1.0:
            a = a * self.scale
        small = a <= 1.0

        # log branch on |e| clamped to [0, 1]; |e|^(2-Φ) = exp((2-Φ) ln|e|), 0 at |e| = 0
        a_s = ops.minimum(a, 1.0)
        positive = a_s > 0.0
        safe = ops.where(positive, a_s, ops.ones_like(a_s))
        power = ops.where(positive, ops.exp((2.0 - phi) * ops.log(safe)), ops.zeros_like(a_s))
        log_branch = self.lambda_ * ops.log1p(power)

        # quadratic branch on |e| clamped to [1, inf)
        a_l = ops.maximum(a, 1.0)
        quad_branch = ops.square(a_l) + self.offset

        per_coord = ops.where(small, log_branch, quad_branch)
        return ops.mean(per_coord, axis=-1)

    def get_config(self) -> dict[str, Any]:
        """Serializable configuration (includes ``lambda_``, ``scale`` and ``num_coords``)."""
        config = super().get_config()
        config.update({"lambda_": self.lambda_, "scale": self.scale, "num_coords": self.num_coords})
        return config


class _PointwiseLoss(keras.losses.Loss):
    """Mean of a per-coordinate penalty over the ``num_coords`` coordinates, per sample.

    ``y_true`` is either packed ``(B, 2·num_coords)`` (the ``Φ`` half is ignored) or
    ``(B, num_coords)``; ``y_pred`` is ``(B, num_coords)``. Subclasses set :meth:`penalty`.

    Args:
        num_coords: ``2N``.
        name: loss name.
        reduction: Keras reduction over the batch.
        dtype: Keras loss dtype.
    """

    def __init__(self, num_coords: int = 136, name: str | None = None,
                 reduction: str | None = "sum_over_batch_size", dtype: Any = None) -> None:
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        if int(num_coords) <= 0:
            raise ValueError(f"num_coords must be positive, got {num_coords!r}")
        self.num_coords = int(num_coords)

    default_name = "pointwise_loss"

    @staticmethod
    def penalty(e: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-sample mean penalty, shape ``(B,)``."""
        points, _ = _split_targets(y_true, y_pred, self.num_coords, False, type(self).__name__)
        return ops.mean(self.penalty(ops.cast(points, y_pred.dtype) - y_pred), axis=-1)

    def get_config(self) -> dict[str, Any]:
        """Serializable configuration (includes ``num_coords``)."""
        config = super().get_config()
        config.update({"num_coords": self.num_coords})
        return config


@keras.saving.register_keras_serializable(package="acrloss")
class L2Loss(_PointwiseLoss):
    """Mean squared error per sample (see :class:`_PointwiseLoss` for the target layout)."""

    default_name = "l2_loss"

    @staticmethod
    def penalty(e: Any) -> Any:
        return ops.square(e)


@keras.saving.register_keras_serializable(package="acrloss")
class L1Loss(_PointwiseLoss):
    """Mean absolute error per sample (see :class:`_PointwiseLoss` for the target layout)."""

    default_name = "l1_loss"

    @staticmethod
    def penalty(e: Any) -> Any:
        return ops.abs(e)


def get_loss(name: str, num_coords: int, **kw: Any) -> keras.losses.Loss:
    """Build a loss by name.

    Args:
        name: ``"acr"``, ``"l2"`` or ``"l1"`` (case-insensitive).
        num_coords: ``2N``.
        **kw: forwarded to the constructor. ``lambda_`` and ``scale`` are only used by
            ACR and are ignored by L2/L1 so callers may pass them unconditionally.

    Raises:
        ValueError: unknown name.
    """
    key = str(name).strip().lower()
    if key == "acr":
        return ACRLoss(num_coords=num_coords, **kw)
    if key in ("l2", "l1"):
        kw = {k: v for k, v in kw.items() if k not in ("lambda_", "scale")}
        cls = L2Loss if key == "l2" else L1Loss
        return cls(num_coords=num_coords, **kw)
    raise ValueError(f"unknown loss {name!r}; choose one of {list(LOSS_NAMES)}")


# --------------------------------------------------------------------------- MuSiCa cascade
@keras.saving.register_keras_serializable(package="acrloss")
class CascadeLoss(keras.losses.Loss):
    """Per-stage landmark loss plus error-prediction loss, on the ``cascade`` output.

    ``y_pred``: ``(B, T, 2N + 1)`` (stage shapes, then the stage's predicted error);
    ``y_true``: ``(B, 2N)`` points or ``(B, 4N)`` points + Φ (ACR needs Φ). Per face::

        sum_t w_t * [ landmark_loss(y_true, shape_t) + error_weight * |stop_grad(NME_t) - e_t| ]

    with ``w_t = stage_weights`` normalized to sum 1 (default: equal) and ``NME_t`` the
    face's NME (fraction) at stage ``t``.

    Args:
        base: ``"acr"``, ``"l2"`` or ``"l1"`` (:func:`acrloss.losses.get_loss`).
        num_points: ``N``.
        num_stages: ``T``.
        error_weight: weight of the error-prediction term.
        lambda_: ACR's λ.
        norm_points: NME normalization points.
        stage_weights: optional per-stage weights.
        scale: ACR's error scale ``s`` (the loss sees ``s·e``); must stay 1 for L2/L1.
    """

    def __init__(self, base: str = "acr", num_points: int = 68, num_stages: int = 4, error_weight: float = 0.1,
                 lambda_: float = 1.0, norm_points: Sequence[int] = (36, 45),
                 stage_weights: Sequence[float] | None = None, name: str = "cascade_loss",
                 reduction: str | None = "sum_over_batch_size", dtype: Any = None, scale: float = 1.0) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.base = str(base).lower()
        self.num_points = int(num_points)
        self.num_stages = int(num_stages)
        self.error_weight = float(error_weight)
        self.lambda_ = float(lambda_)
        self.scale = float(scale)
        if self.base != "acr" and self.scale != 1.0:
            raise ValueError(f"CascadeLoss: scale={scale!r} applies to the ACR loss only, not {self.base!r}")
        self.norm_points = parse_norm(norm_points)
        weights = [1.0] * self.num_stages if stage_weights is None else [float(w) for w in stage_weights]
        if len(weights) != self.num_stages or sum(weights) <= 0 or min(weights) < 0:
            raise ValueError(f"CascadeLoss: stage_weights {stage_weights!r} invalid for {self.num_stages} stages")
        self.stage_weights = [w / sum(weights) for w in weights]
        extra = {"lambda_": self.lambda_, "scale": self.scale} if self.base == "acr" else {}
        self.landmark_loss = get_loss(self.base, 2 * self.num_points, reduction=None, **extra)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-face loss ``(B,)``."""
        n2 = 2 * self.num_points
        if y_pred.shape[-1] is not None and (int(y_pred.shape[-1]) != n2 + 1 or int(y_pred.shape[1]) != self.num_stages):
            raise ValueError(f"CascadeLoss: y_pred {tuple(y_pred.shape)}; expected (B, {self.num_stages}, {n2 + 1})")
        y_true = ops.cast(y_true, y_pred.dtype)
        points = y_true[:, :n2]
        total = 0.0
        for t, w in enumerate(self.stage_weights):
            shape_t = y_pred[:, t, :n2]
            err_t = y_pred[:, t, n2]
            actual = ops.stop_gradient(face_nme(points, shape_t, self.num_points, self.norm_points))
            term = self.landmark_loss.call(y_true, shape_t) + self.error_weight * ops.abs(actual - err_t)
            total = total + w * term
        return total

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"base": self.base, "num_points": self.num_points, "num_stages": self.num_stages,
                       "error_weight": self.error_weight, "lambda_": self.lambda_,
                       "norm_points": norm_config(self.norm_points), "stage_weights": list(self.stage_weights),
                       "scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package="acrloss")
class HeatmapMSE(keras.losses.Loss):
    """Mean squared error between predicted and target heatmaps ``(B, h, w, N)``.

    Per sample: the mean over all cells and channels of ``w · (ŷ − y)²`` with
    ``w = 1 + foreground_weight · y`` (``foreground_weight = 0``: plain MSE; > 0 weighs the
    cells under each Gaussian more than the background, which dominates small-σ maps).
    ``keras.ops`` only.

    Args:
        foreground_weight: extra weight of the target's foreground (``≥ 0``).
        name: loss name.
        reduction: Keras reduction over the batch.
        dtype: Keras loss dtype.
    """

    def __init__(self, foreground_weight: float = 0.0, name: str = "heatmap_mse",
                 reduction: str | None = "sum_over_batch_size", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not foreground_weight >= 0:
            raise ValueError(f"foreground_weight must be >= 0, got {foreground_weight!r}")
        self.foreground_weight = float(foreground_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-sample weighted MSE, shape ``(B,)``."""
        if len(y_pred.shape) != 4:
            raise ValueError(f"HeatmapMSE: y_pred must be (B, h, w, N) heatmaps, got shape {tuple(y_pred.shape)}")
        t_shape, p_shape = tuple(y_true.shape)[1:], tuple(y_pred.shape)[1:]
        if len(t_shape) != 3 or any(a is not None and b is not None and a != b for a, b in zip(t_shape, p_shape)):
            raise ValueError(f"HeatmapMSE: target heatmaps {tuple(y_true.shape)} do not match predictions {tuple(y_pred.shape)}")
        y_true = ops.cast(y_true, y_pred.dtype)
        err = ops.square(y_pred - y_true)
        if self.foreground_weight:
            err = err * (1.0 + self.foreground_weight * y_true)
        return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=-1)

    def get_config(self) -> dict[str, Any]:
        """Serializable configuration (includes ``foreground_weight``)."""
        config = super().get_config()
        config.update({"foreground_weight": self.foreground_weight})
        return config
