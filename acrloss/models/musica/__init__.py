"""MuSiCa: selective cascaded regression with patch attention (GitHub issue 4).

Layers and builders only: :mod:`.layers` (pyramid, initial state, patch encoder, the
export-kernel switch), :mod:`.sampler` (bilinear patch sampling), :mod:`.builder`
(:func:`build_musica`, stage access). Loss: :class:`acrloss.losses.CascadeLoss`; metrics:
:class:`acrloss.metrics.StageNME`, :class:`acrloss.metrics.ErrorMAE`; training glue:
:mod:`acrloss.tasks.musica`.

"Knowing When to Quit: Selective Cascaded Regression with Patch Attention for Real-Time
Face Alignment". A cascade of small stages refines a shape that starts at the mean shape
of the training faces; every stage also predicts how wrong its own output still is, so
inference can stop early per face (:mod:`acrloss.early_exit`).

Model (``keras.ops`` only; runs on every Keras 3 backend; ``.h5`` save/load)::

    image (B, S, S, 3) RGB [0, 255]
      -> ImagePyramid: grey (or RGB) levels S, S/2, S/4 (2x2 average pooling), [0, 1]
      -> InitialState: mean shape (B, 2N) (non-trainable weight) and a zero hidden state (B, H)
      -> stage 1 .. T (own weights; coarse pyramid level to fine), each a nested functional
         model ``stage_t``: [level image, shape, hidden] -> [shape', hidden', predicted error]
           PatchSampler  bilinear (P+2) x (P+2) patches around K of the current points
                         (separable: Wy · image · Wxᵀ, batched matmuls), each standardized
           PatchEncoder  per patch: conv3x3 valid -> P x P -> max-pool -> conv3x3 -> max-pool;
                         the centre of the finer map concatenated with the coarser map -> F
           attention     gate = sigmoid(Dense(relu(Dense(f))))  in (0, 1), f * gate   (per patch)
           projection    Dense(D) per patch, flattened (K * D), concatenated with the shape
           GRU-like      z, r = sigmoid(Dense([x, h])); h~ = tanh(Dense([x, r*h])); h' = h + z (h~ - h)
           head          shape' = shape + Dense(2N)(h')   (zero-initialised: starts as identity)
                         error  = Dense(1)(h')

Outputs: a dict ``{"landmarks": (B, 2N) final stage, "stages": (B, T, 2N), "errors":
(B, T), "cascade": (B, T, 2N + 1)}``; ``cascade`` is ``stages`` with ``errors`` appended
per stage, the one output the training loss (:class:`acrloss.losses.CascadeLoss`) is attached to.

Coordinates follow :mod:`acrloss.config`: normalized crop coordinates ``n = (p + 0.5) / S
- 0.5``. At pyramid level ``l`` (side ``S_l = S / 2**l``) a point sits at pixel ``p_l = (n +
0.5) S_l - 0.5`` (2x2 average pooling keeps pixel centres consistent). A patch of side
``P`` samples the pixel offsets ``k - (P - 1) / 2``, ``k = 0 .. P-1``, around ``p_l``;
samples outside the image take the nearest border pixel (clamped indices).

Predicted error unit: the per-face NME as a fraction (mean point-to-point error divided by
the distance between the dataset's normalization points, 300-W: outer eye corners 36/45),
the same quantity as the reported NME (0.05 = 5 %). Early-exit thresholds are in this unit.

Default (:data:`DEFAULTS`, S = 128): 4 stages on levels 32, 64, 128, 128 px with 18
("coarse"), 34 ("half"), 68, 68 patches of 14 x 14 sampled pixels (P = 12), encoder widths
16/32, gate bottleneck 16, D = 16, H = 128: 3.9 + 7.3 + 14.4 + 14.4 = 40.0 M multiply-adds per
face (sampling counted as 4 per sampled value), 1.7 M parameters.

Training (:mod:`acrloss.tasks.musica`): :class:`acrloss.losses.CascadeLoss` on ``cascade`` — per stage the landmark loss (ACR by
default, L2/L1 selectable, from :mod:`acrloss.losses`) plus ``error_weight * |NME - e|``
with the actual NME under ``stop_gradient``. The sampling positions are under
``stop_gradient`` as well (as in classic cascaded regression); the stages stay coupled
through the additive shape update and the hidden state. Targets are the usual ``(B, 2N)``
points or ``(B, 4N)`` points + Φ, fed to every output key by :class:`acrloss.tasks.musica.DictTargets`.
"""
from acrloss.models.musica.builder import DEFAULTS, OUTPUT_KEYS, build_musica, stage_macs, stage_models
from acrloss.models.musica.layers import ImagePyramid, InitialState, PatchEncoder, export_kernels, pool2x2
from acrloss.models.musica.sampler import (
    COARSE_68,
    COARSE_98,
    PatchSampler,
    bilinear_patches,
    bilinear_patches_gather,
    bilinear_patches_window,
    coarse_points,
    interpolation_matrix,
    resolve_points,
)

__all__ = [
    "ImagePyramid",
    "InitialState",
    "PatchSampler",
    "PatchEncoder",
    "build_musica",
    "stage_models",
    "stage_macs",
    "resolve_points",
    "coarse_points",
    "bilinear_patches",
    "bilinear_patches_gather",
    "bilinear_patches_window",
    "interpolation_matrix",
    "pool2x2",
    "export_kernels",
    "OUTPUT_KEYS",
    "DEFAULTS",
    "COARSE_68",
    "COARSE_98",
]
