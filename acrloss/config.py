"""Enums, per-dataset specifications and dataclass configurations.

Coordinate convention used everywhere inside the library
--------------------------------------------------------
Points are ``(x, y)`` pairs in **0-based pixel-centre** coordinates: the centre of
the top-left pixel is ``(0, 0)``; the image spans ``[-0.5, W - 0.5]`` horizontally.
``.pts`` files store 1-based coordinates; :mod:`acrloss.data_prep.formats` converts
at the file boundary (subtract 1 on read, add 1 on write).

*Normalized* coordinates (model targets, label ``.npy`` files) refer to a square crop of
side ``S`` pixels: ``n = (p + 0.5) / S - 0.5`` so the crop's outer pixel edges sit at
``-0.5`` and ``+0.5``. A face is flattened as ``[x0, y0, x1, y1, ...]``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Sequence


class DatasetName(str, enum.Enum):
    """Datasets the library knows how to read."""

    w300 = "300w"
    cofw = "cofw"
    wflw = "wflw"
    images = "images"  # any folder of images with a .pts beside each

    @classmethod
    def parse(cls, value: "str | DatasetName") -> "DatasetName":
        if isinstance(value, cls):
            return value
        for member in cls:
            if member.value == str(value).lower() or member.name == str(value):
                return member
        raise ValueError(f"unknown dataset {value!r}; choose one of {[m.value for m in cls]}")


class ModelArch(str, enum.Enum):
    """Model architectures."""

    MNV2 = "mnv2"
    EFFICIENTNET_B0 = "efficientnet_b0"
    EFFICIENTNET_B3 = "efficientnet_b3"
    MNV2_HEATMAP = "mnv2_heatmap"  # MobileNetV2 + heatmap head, decoded in the model (acrloss.models.heatmap)
    MUSICA = "musica"  # selective patch cascade with predicted errors, early exit (acrloss.models.musica)

    @classmethod
    def parse(cls, value: "str | ModelArch") -> "ModelArch":
        if isinstance(value, cls):
            return value
        for member in cls:
            if member.value == str(value).lower() or member.name == str(value):
                return member
        raise ValueError(f"unknown architecture {value!r}; choose one of {[m.value for m in cls]}")


def _mirror_68() -> tuple[int, ...]:
    """The iBUG 68-point horizontal mirror map (0-based)."""
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nose base
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer mouth
    pairs += [(60, 64), (61, 63), (67, 65)]  # inner mouth
    m = list(range(68))
    for a, b in pairs:
        m[a], m[b] = b, a
    return tuple(m)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's landmark scheme looks like."""

    name: str
    num_points: int
    mirror: tuple[int, ...]
    norm_points: tuple[int, int]  # NME normalization: distance between these two points
    norm_name: str

    @property
    def num_coords(self) -> int:
        return 2 * self.num_points


W300_SPEC = DatasetSpec("300w", 68, _mirror_68(), (36, 45), "outer eye corners (36, 45)")

DATASET_SPECS: dict[DatasetName, DatasetSpec] = {
    DatasetName.w300: W300_SPEC,
    DatasetName.images: W300_SPEC,
}


def dataset_spec(name: "str | DatasetName") -> DatasetSpec:
    """The :class:`DatasetSpec` for a dataset name."""
    name = DatasetName.parse(name)
    if name not in DATASET_SPECS:
        raise NotImplementedError(f"dataset {name.value!r} has no landmark specification yet")
    return DATASET_SPECS[name]


@dataclass
class CropConfig:
    """How a face is cut out of its image."""

    input_size: int = 224
    margin: float = 0.25  # the square side is (1 + margin) x the box's longer side


#: detector-like box jitter statistics (see AugmentConfig); fitted by
#: ``python benchmarks/box_calibration.py --data-dir ../shared/data/300w --max-faces 400``
#: (300-W train split only): robust standard deviations of the calibrated dlib box's centre
#: offset (x, y) / landmark side and of log(side ratio), over 381 matched faces (plain standard
#: deviations: 0.096, 0.056, 0.105; means 0.002, 0.003, -0.021)
BOX_JITTER_SHIFT: tuple[float, float] = (0.0965, 0.0714)
BOX_JITTER_LOG_SCALE: float = 0.0676


@dataclass
class AugmentConfig:
    """On-the-fly augmentation; every probability/range is configurable, 0 disables."""

    flip_prob: float = 0.5
    rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    shift_frac: float = 0.05  # max translation as a fraction of the crop side
    brightness: float = 0.2  # +- fraction
    contrast: float = 0.2
    gamma_range: tuple[float, float] = (0.8, 1.25)
    blur_prob: float = 0.2
    occlusion_prob: float = 0.3
    occlusion_max_frac: float = 0.35  # max side of an occluding rectangle, fraction of crop
    # -- real-photo augmentations (issue 12); 0 disables each, so the defaults above are unchanged
    lowres_prob: float = 0.0  # shrink the crop so the face is lowres_face_px wide, then back up
    lowres_face_px: tuple[float, float] = (24.0, 96.0)
    jpeg_prob: float = 0.0  # re-encode as JPEG at a quality drawn from jpeg_quality
    jpeg_quality: tuple[int, int] = (20, 80)
    motion_blur_prob: float = 0.0  # a centred line kernel of odd length <= motion_blur_max px, any angle
    motion_blur_max: int = 9
    grey_prob: float = 0.0  # replace the colours by their luma (3 equal channels)
    # detector-like box jitter: crop around a box perturbed the way a calibrated dlib box
    # differs from the landmark box. Centre offset / landmark side and log(side ratio) are
    # drawn from normals with these standard deviations (clipped at 2.5 sigma); the numbers
    # come from `benchmarks/box_calibration.py` (acrloss.detectors.box_jitter_stats)
    box_jitter_prob: float = 0.0
    box_jitter_shift: tuple[float, float] = BOX_JITTER_SHIFT
    box_jitter_log_scale: float = BOX_JITTER_LOG_SCALE

    def __post_init__(self) -> None:
        for name in ("flip_prob", "blur_prob", "occlusion_prob", "lowres_prob", "jpeg_prob", "motion_blur_prob",
                     "grey_prob", "box_jitter_prob"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {v!r}")
        if not 0.0 <= float(self.rotation_deg) <= 90.0:
            raise ValueError(f"AugmentConfig.rotation_deg must be in [0, 90], got {self.rotation_deg!r}")
        lo, hi = (float(v) for v in self.lowres_face_px)
        if not 4.0 <= lo <= hi:
            raise ValueError(f"AugmentConfig.lowres_face_px must be (low, high) with 4 <= low <= high, got {self.lowres_face_px!r}")
        qlo, qhi = (int(v) for v in self.jpeg_quality)
        if not 1 <= qlo <= qhi <= 100:
            raise ValueError(f"AugmentConfig.jpeg_quality must be (low, high) within 1..100, got {self.jpeg_quality!r}")
        if int(self.motion_blur_max) < 3:
            raise ValueError(f"AugmentConfig.motion_blur_max must be >= 3 px, got {self.motion_blur_max!r}")
        sx, sy = (float(v) for v in self.box_jitter_shift)
        if min(sx, sy, float(self.box_jitter_log_scale)) < 0.0:
            raise ValueError("AugmentConfig.box_jitter_shift and box_jitter_log_scale must be >= 0")
        # JSON round trips (config.json) give lists: keep tuples
        self.scale_range = tuple(self.scale_range)
        self.gamma_range = tuple(self.gamma_range)
        self.lowres_face_px = tuple(self.lowres_face_px)
        self.jpeg_quality = tuple(self.jpeg_quality)
        self.box_jitter_shift = tuple(self.box_jitter_shift)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(0.0, 0.0, (1.0, 1.0), 0.0, 0.0, 0.0, (1.0, 1.0), 0.0, 0.0, 0.0)

    @classmethod
    def robust(cls) -> "AugmentConfig":
        """The real-photo recipe of issue 12: the default augmentations with rotations up to
        35 degrees, plus low resolution, JPEG, motion blur, greyscale and detector-like box jitter."""
        return cls(rotation_deg=35.0, lowres_prob=0.2, jpeg_prob=0.3, motion_blur_prob=0.15, grey_prob=0.1,
                   box_jitter_prob=0.5)

    @classmethod
    def preset(cls, name: str) -> "AugmentConfig":
        """``default``, ``robust`` or ``none``."""
        presets = {"default": cls, "robust": cls.robust, "none": cls.none}
        if name not in presets:
            raise ValueError(f"unknown augmentation preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()


#: training/validation splits of TrainConfig.split: name -> held-out 300-W source (None: random)
SPLITS: dict[str, str | None] = {"random": None, "loso-lfpw": "lfpw/trainset", "loso-helen": "helen/trainset"}


@dataclass
class CurriculumConfig:
    """Kept-variance levels of the ACR curriculum, spread evenly over the epochs."""

    levels: Sequence[int] = (80, 85, 90, 95)


@dataclass
class TrainConfig:
    """Everything a training run depends on."""

    arch: str = ModelArch.MNV2.value
    dataset: str = DatasetName.w300.value
    loss: str = "acr"  # acr | l2 | l1
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    alpha: float = 1.0  # MobileNetV2 width
    head: str = "gap"  # gap | spatial (see acrloss.models.regressor)
    start: str = "random"  # random | imagenet (MobileNetV2, converted torchvision weights) | a weights path
    # a full-model checkpoint (.h5, same arch and input size) whose weights replace the start,
    # e.g. to continue a finished run with a new schedule; recorded in config.json
    init_weights: str | None = None
    preprocessing: str | None = None  # unit | imagenet; None: imagenet for start=imagenet, else unit
    acr_lambda: float = 1.0
    acr_scale: float = 1.0  # ACR error scale s: the loss sees s·(target - prediction), see ACRLoss
    workers: int = 2
    max_train_faces: int | None = None
    # arch mnv2_heatmap only (loss: heatmap MSE; `loss` and the ACR curriculum do not apply)
    heatmap_size: int | None = None  # side of the heatmaps, ceil(input/32) times a power of two; None: input/4
    heatmap_sigma: float | None = None  # Gaussian sigma in heatmap cells; None: acrloss.models.heatmap.default_sigma
    decoder: str = "keyposs"  # argmax | quarter | dark | keyposs: the in-model decoder (validation NME, best.h5)
    heatmap_fg_weight: float = 10.0  # heatmap MSE weight 1 + w * target (w = 0: plain MSE)
    # arch musica only: weight of the per-stage error-prediction term; overrides of
    # acrloss.models.musica.build_musica keywords (e.g. {"hidden_units": 128})
    musica_error_weight: float = 0.1
    musica_options: dict = field(default_factory=dict)
    crop: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    # -- generalization recipe (issue 12; acrloss.recipe) -------------------------------------
    # which faces train and validate: "random" (a fixed-seed val_fraction of the 300-W train
    # split) or leave-one-source-out: "loso-lfpw" (train afw + helen/trainset, validate on all of
    # lfpw/trainset) / "loso-helen" (train afw + lfpw/trainset, validate on helen/trainset);
    # val_fraction does not apply to the loso splits
    split: str = "random"
    clip_global_norm: float | None = None  # the optimizer's global_clipnorm (None: no clipping)
    # exponential moving average of the weights (the optimizer's use_ema / ema_momentum); the
    # validation NME and best.h5 then use the averaged weights
    ema_momentum: float | None = None

    def __post_init__(self) -> None:
        self.validate_recipe()

    def validate_recipe(self) -> None:
        """Check the issue-12 recipe settings (split, clipping, EMA); raises ``ValueError``."""
        if self.split not in SPLITS:
            raise ValueError(f"TrainConfig.split must be one of {list(SPLITS)}, got {self.split!r}")
        if self.clip_global_norm is not None and not float(self.clip_global_norm) > 0.0:
            raise ValueError(f"TrainConfig.clip_global_norm must be > 0 (or None for no clipping), got {self.clip_global_norm!r}")
        if self.ema_momentum is not None and not 0.0 < float(self.ema_momentum) < 1.0:
            raise ValueError(f"TrainConfig.ema_momentum must be in (0, 1) (or None for no EMA), got {self.ema_momentum!r}")
        if isinstance(self.augment, dict):  # from config.json
            self.augment = AugmentConfig(**self.augment)
