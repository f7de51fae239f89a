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

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence


class ChoiceEnum(str, enum.Enum):
    """A string enum of named choices: :meth:`parse` accepts a member, its value (any case)
    or its name; :meth:`choices` lists the values (argparse ``choices``, error messages)."""

    @classmethod
    def label(cls) -> str:
        """What a value names, for error messages (``"dataset"``, ``"architecture"`` ...)."""
        return cls.__name__

    @classmethod
    def choices(cls) -> list[str]:
        """The values, in definition order."""
        return [m.value for m in cls]

    @classmethod
    def parse(cls, value: "str | ChoiceEnum"):
        """The member named by ``value``; raises ``ValueError`` listing the choices."""
        if isinstance(value, cls):
            return value
        for member in cls:
            if member.value == str(value).lower() or member.name == str(value):
                return member
        raise ValueError(f"unknown {cls.label()} {value!r}; choose one of {cls.choices()}")


class DatasetName(ChoiceEnum):
    """Datasets the library knows how to read."""

    w300 = "300w"
    cofw = "cofw"
    wflw = "wflw"
    aflw = "aflw"  # AFLW-19 (mmpose COCO-style JSON)
    cofw68 = "cofw68"  # COFW test images with the 68-point labels of the COFW-68 benchmark (test only)
    images = "images"  # any folder of images with a .pts beside each
    coco = "coco"  # one COCO-style face-keypoint JSON file (any point count)

    @classmethod
    def label(cls) -> str:
        return "dataset"


class ModelArch(ChoiceEnum):
    """Model architectures (each trained by the task of :data:`acrloss.tasks.TASKS`)."""

    MNV2 = "mnv2"
    EFFICIENTNET_B0 = "efficientnet_b0"
    EFFICIENTNET_B3 = "efficientnet_b3"
    MNV2_HEATMAP = "mnv2_heatmap"  # MobileNetV2 + heatmap head, decoded in the model (acrloss.models.heatmap)
    MUSICA = "musica"  # selective patch cascade with predicted errors, early exit (acrloss.models.musica)

    @classmethod
    def label(cls) -> str:
        return "architecture"


class LossName(ChoiceEnum):
    """Training losses: the coordinate losses (:data:`COORDINATE_LOSSES`) and the heatmap MSE
    (the heatmap family's only loss)."""

    ACR = "acr"
    L2 = "l2"
    L1 = "l1"
    HEATMAP_MSE = "heatmap_mse"

    @classmethod
    def label(cls) -> str:
        return "loss"


#: the losses on flattened coordinates (:func:`acrloss.losses.get_loss`)
COORDINATE_LOSSES: tuple[LossName, ...] = (LossName.ACR, LossName.L2, LossName.L1)


class Head(ChoiceEnum):
    """Regression heads of :func:`acrloss.models.regressor.build_regressor`."""

    GAP = "gap"  # global average pooling, then a dense layer
    SPATIAL = "spatial"  # 1x1 convolution, flattened, then a dense layer

    @classmethod
    def label(cls) -> str:
        return "head"


class Decoder(ChoiceEnum):
    """Heatmap decoders of :mod:`acrloss.codecs.heatmap`."""

    ARGMAX = "argmax"
    QUARTER = "quarter"
    DARK = "dark"
    KEYPOSS = "keyposs"

    @classmethod
    def label(cls) -> str:
        return "decoder"


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
    """What a dataset's landmark scheme looks like.

    ``norm_points`` is either a pair ``(a, b)``, whose ground-truth distance normalizes the
    NME, or ``"box"``: each face's box size (the annotated size when the reader gives one,
    :attr:`acrloss.data_prep.datasets.Sample.norm`, else ``sqrt(w * h)`` of the landmark
    extent; training-time metrics always use the landmark extent). ``mirror`` is ``None``
    for a scheme without a known mirror map (horizontal flips are then disabled).
    ``failure_threshold`` (a fraction) sets the FR / AUC cut-off reported by ``Test``.
    ``test_subsets`` are the subsets ``Test`` evaluates by default; ``source`` names where
    the conventions come from.
    """

    name: str
    num_points: int
    mirror: tuple[int, ...] | None
    norm_points: "tuple[int, int] | str"
    norm_name: str
    failure_threshold: float = 0.10
    test_subsets: tuple[str, ...] = ()
    eye_corners: tuple[int, int] | None = None  # (image-left, image-right) outer eye corners of a frontal face
    source: str = ""

    def __post_init__(self) -> None:
        n = int(self.num_points)
        if n <= 0:
            raise ValueError(f"dataset spec {self.name!r}: num_points must be positive, got {self.num_points!r}")
        if self.mirror is not None:
            check_mirror(self.mirror, n, self.name)
        if isinstance(self.norm_points, str):
            if self.norm_points != "box":
                raise ValueError(f"dataset spec {self.name!r}: norm_points must be a pair of indices or 'box'")
        else:
            a, b = (int(i) for i in self.norm_points)
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"dataset spec {self.name!r}: norm_points {tuple(self.norm_points)} invalid for {n} points")
        if not 0 < float(self.failure_threshold) < 1:
            raise ValueError(f"dataset spec {self.name!r}: failure_threshold must be a fraction in (0, 1)")

    @property
    def num_coords(self) -> int:
        return 2 * self.num_points


def check_mirror(mirror: Sequence[int], num_points: int, name: str = "mirror map") -> tuple[int, ...]:
    """Validate a horizontal mirror map: a permutation of ``range(num_points)`` that is its own
    inverse (applying it twice is the identity). Returns it as a tuple of ints."""
    m = tuple(int(i) for i in mirror)
    if len(m) != num_points or sorted(m) != list(range(num_points)):
        raise ValueError(f"{name}: the mirror map must be a permutation of 0..{num_points - 1} "
                         f"({len(m)} entries given)")
    bad = [i for i in range(num_points) if m[m[i]] != i]
    if bad:
        raise ValueError(f"{name}: the mirror map is not its own inverse at indices {bad[:10]}")
    return m


def mirror_from_pairs(num_points: int, pairs: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """A mirror map of ``num_points`` points that swaps each ``(a, b)`` pair (others stay)."""
    m = list(range(num_points))
    for a, b in pairs:
        m[a], m[b] = b, a
    return tuple(m)


# WFLW 98 points: the mirror pairs of mmpose's configs/_base_/datasets/wflw.py ("swap"
# entries); NME normalized by the outer eye corners 60 / 72 (mmpose
# evaluation.metrics.NME.DEFAULT_KEYPOINT_INDICES["wflw"]), FR / AUC at 10 %.
_WFLW_PAIRS = ([(i, 32 - i) for i in range(16)]  # face contour 0-32, 16 is the chin
               + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]  # brows
               + [(55, 59), (56, 58)]  # nose base (51-54 bridge and 57 stay)
               + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]  # eyes
               + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95)]  # mouth
               + [(96, 97)])  # pupils
# COFW 29 points: mmpose's configs/_base_/datasets/cofw.py; NME by points 8 / 9 (mmpose
# DEFAULT_KEYPOINT_INDICES["cofw"], the outer eye corners), FR / AUC at 10 %.
_COFW_PAIRS = [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23)]
# AFLW-19: mmpose's configs/_base_/datasets/aflw.py; NME by the face box size (mmpose's
# AFLWDataset "box_size" annotation, NME(norm_mode="use_norm_item", norm_item="box_size")),
# FR / AUC at 7 % (the AUC@7 of the AFLW-19 literature).
_AFLW_PAIRS = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]

W300_SPEC = DatasetSpec("300w", 68, _mirror_68(), (36, 45), "outer eye corners (36, 45)",
                        test_subsets=("common", "challenging", "full"), eye_corners=(36, 45),
                        source="iBUG 300-W; mmpose NME.DEFAULT_KEYPOINT_INDICES['300w'] = [36, 45]")
WFLW_SPEC = DatasetSpec("wflw", 98, mirror_from_pairs(98, _WFLW_PAIRS), (60, 72), "outer eye corners (60, 72)",
                        test_subsets=("test", "pose", "expression", "illumination", "makeup", "occlusion", "blur"),
                        eye_corners=(60, 72),
                        source="mmpose configs/_base_/datasets/wflw.py (flip pairs); NME.DEFAULT_KEYPOINT_INDICES['wflw'] = [60, 72]")
COFW_SPEC = DatasetSpec("cofw", 29, mirror_from_pairs(29, _COFW_PAIRS), (8, 9), "outer eye corners (8, 9)",
                        test_subsets=("test",), eye_corners=(8, 9),
                        source="mmpose configs/_base_/datasets/cofw.py (flip pairs); NME.DEFAULT_KEYPOINT_INDICES['cofw'] = [8, 9]")
AFLW_SPEC = DatasetSpec("aflw", 19, mirror_from_pairs(19, _AFLW_PAIRS), "box", "face box size (annotated box_size)",
                        failure_threshold=0.07, test_subsets=("full", "frontal"), eye_corners=(6, 11),
                        source="mmpose configs/_base_/datasets/aflw.py (flip pairs); AFLWDataset box_size + NME(norm_item='box_size')")
COFW68_SPEC = DatasetSpec("cofw68", 68, _mirror_68(), (36, 45), "outer eye corners (36, 45)",
                          test_subsets=("test",), eye_corners=(36, 45),
                          source="COFW-68 (Ghiasi & Fowlkes 2015) labels in the iBUG 68-point scheme; normalized as 300-W")

DATASET_SPECS: dict[DatasetName, DatasetSpec] = {
    DatasetName.w300: W300_SPEC,
    DatasetName.wflw: WFLW_SPEC,
    DatasetName.cofw: COFW_SPEC,
    DatasetName.aflw: AFLW_SPEC,
    DatasetName.cofw68: COFW68_SPEC,
    DatasetName.images: W300_SPEC,  # a user folder of 68-point .pts; other counts: user_spec()
    DatasetName.coco: W300_SPEC,  # a user COCO JSON of 68 points; other counts: user_spec()
}

#: datasets whose point scheme is the user's (read from the files): see :func:`user_spec`
USER_DATASETS = (DatasetName.images, DatasetName.coco)


def dataset_spec(name: "str | DatasetName") -> DatasetSpec:
    """The :class:`DatasetSpec` for a dataset name (user datasets: the 68-point default,
    see :func:`user_spec` for other point counts)."""
    name = DatasetName.parse(name)
    if name not in DATASET_SPECS:
        raise NotImplementedError(f"dataset {name.value!r} has no landmark specification yet")
    return DATASET_SPECS[name]


def user_spec(num_points: int, mirror: "Sequence[int] | str | None" = None, norm_points: "Sequence[int] | str | None" = None,
              failure_threshold: float = 0.10, name: str = "user") -> DatasetSpec:
    """The spec of a user's own data (a folder of ``.pts`` or one COCO JSON) of any point count.

    ``mirror``: the horizontal mirror map, ``"none"`` (no map: flips are disabled) or ``None``
    (not given: no map either); ``norm_points``: a pair of indices or ``"box"``. With 68
    points and neither given, the 300-W scheme (mirror map, outer eye corners 36 / 45) is
    assumed; otherwise a missing ``norm_points`` means ``"box"`` (the landmark extent's
    ``sqrt(w * h)``).
    """
    n = int(num_points)
    if n == 68 and mirror is None and norm_points is None:
        return dataclasses.replace(W300_SPEC, name=name, test_subsets=())
    if isinstance(mirror, str):
        if mirror.lower() != "none":
            raise ValueError(f"{name}: mirror must be a list of point indices or 'none', got {mirror!r}")
        mirror = None
    norm = "box" if norm_points is None else (norm_points if isinstance(norm_points, str) else tuple(int(i) for i in norm_points))
    norm_name = "landmark box size sqrt(w*h)" if norm == "box" else f"points {norm}"
    return DatasetSpec(name, n, None if mirror is None else check_mirror(mirror, n, f"{name} mirror map"), norm, norm_name,
                       failure_threshold=failure_threshold, source="given by the user")


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


# -- devices and precision (issue 16; acrloss.distribution) --------------------------------
#: ``devices`` value meaning every device of the backend's default platform
AUTO_DEVICES = "auto"
#: the ``precision`` settings: Keras dtype policies (``float32``: no mixed precision)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def parse_devices(value: "str | int") -> "str | int":
    """``"auto"`` or a device count >= 1 (an int or its string); raises ``ValueError``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO_DEVICES:
            return AUTO_DEVICES
        if not text.isdigit():
            raise ValueError(f"devices must be 'auto' or a device count >= 1, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"devices must be 'auto' or a device count >= 1, got {value!r}")
    return value


def parse_precision(value: str) -> str:
    """One of :data:`PRECISIONS`; raises ``ValueError``."""
    if value not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {value!r}")
    return value


# -- the loss and the model families (issue 14) --------------------------------------------
class TaskConfigError(ValueError):
    """A setting that does not apply: an option of another model family or loss, or a family
    config (:class:`FamilyConfig`) that is not the one of the run's architecture."""


def _number(owner: str, name: str, value: object, minimum: float, strict: bool) -> float:
    """``value`` as a float ``> minimum`` (``strict``) or ``>= minimum``; ``ValueError`` naming ``owner.name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (value > minimum if strict else value >= minimum):
        raise ValueError(f"{owner}.{name} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


def _from_fields(cls: type, data: Mapping[str, Any]) -> Any:
    """``cls(**data)`` for a dataclass ``cls``; keys that are not its fields are an error naming them."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown settings {unknown}; known: {known}")
    return cls(**data)


@dataclass
class LossConfig:
    """The training loss.

    ``name`` is one of :class:`LossName` or ``None``: the family's default loss, resolved by
    its task (:mod:`acrloss.tasks`; each family lists the losses it trains with).
    ``acr_lambda`` and ``acr_scale`` are ACR's λ and error scale ``s`` (the loss sees
    ``s·(target − prediction)``, see :class:`acrloss.losses.ACRLoss`); they apply to the ACR
    loss only: set away from their defaults with another loss, they are a
    :class:`TaskConfigError`.
    """

    name: str | None = None
    acr_lambda: float = 1.0
    acr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.name is not None:
            self.name = LossName.parse(self.name).value
        self.acr_lambda = _number("LossConfig", "acr_lambda", self.acr_lambda, 0.0, strict=True)
        self.acr_scale = _number("LossConfig", "acr_scale", self.acr_scale, 0.0, strict=True)
        if self.name not in (None, LossName.ACR.value):
            changed = [f.name for f in dataclasses.fields(self) if f.name != "name" and getattr(self, f.name) != f.default]
            if changed:
                raise TaskConfigError(f"setting(s) {changed} do not apply to loss {self.name!r} (they are the ACR loss's)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LossConfig":
        """From a dict of its fields (``config.json``); unknown keys are an error naming them."""
        return _from_fields(cls, data)


#: family name -> its config class (filled by :meth:`FamilyConfig.__init_subclass__`)
_FAMILY_CONFIGS: dict[str, type["FamilyConfig"]] = {}


@dataclass
class FamilyConfig:
    """Base of the per-family model configs (``TrainConfig.model``).

    Each model family's task (:data:`acrloss.tasks.TASKS`) names its subclass
    (``Task.config_class``); a subclass names its family, which tags it in ``config.json``
    so :meth:`from_dict` reads it back::

        @dataclass
        class MyConfig(FamilyConfig, family="myfamily"):
            width: int = 8
    """

    #: the family name (the ``"family"`` entry of :meth:`to_dict`)
    family: ClassVar[str] = ""

    def __init_subclass__(cls, family: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not family:
            raise TypeError(f"{cls.__name__}: name its family, class {cls.__name__}(FamilyConfig, family='name')")
        known = _FAMILY_CONFIGS.get(family)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"family {family!r} already has its config {known.__qualname__}")
        cls.family = family
        _FAMILY_CONFIGS[family] = cls

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FamilyConfig":
        """From ``{"family": name, field: value, ...}`` (:meth:`to_dict`): on the base class, the
        config of the named family; on a subclass, that class (``"family"`` may be left out,
        else it must be the class's own). Unknown keys are an error naming them."""
        data = dict(data)
        family = data.pop("family", cls.family or None)
        if cls is FamilyConfig:
            if family not in _FAMILY_CONFIGS:
                raise ValueError(f"unknown model family {family!r}; known: {sorted(_FAMILY_CONFIGS)}")
            return _FAMILY_CONFIGS[family].from_dict(data)
        if family != cls.family:
            raise ValueError(f"{cls.__name__}: settings of the {family!r} family, not {cls.family!r}")
        return _from_fields(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"family": name, **fields}`` (tuples as lists)."""
        return {"family": self.family, **json.loads(json.dumps(dataclasses.asdict(self), default=str))}


@dataclass
class RegressionConfig(FamilyConfig, family="regression"):
    """Coordinate regression: ``mnv2``, ``efficientnet_b0`` / ``efficientnet_b3``
    (:func:`acrloss.models.build_regressor`)."""

    alpha: float = 1.0  # MobileNetV2 width multiplier (EfficientNet's width is fixed: 1.0 only)
    head: str = Head.GAP.value  # gap | spatial (see acrloss.models.regressor)

    def __post_init__(self) -> None:
        self.alpha = _number("RegressionConfig", "alpha", self.alpha, 0.0, strict=True)
        self.head = Head.parse(self.head).value


@dataclass
class HeatmapConfig(FamilyConfig, family="heatmap"):
    """Heatmap models: ``mnv2_heatmap`` (:func:`acrloss.models.heatmap.build_heatmap_model`;
    the loss is the heatmap MSE, the ACR curriculum does not apply)."""

    alpha: float = 1.0  # MobileNetV2 width multiplier
    size: int | None = None  # side of the heatmaps, ceil(input/32) times a power of two; None: input/4
    sigma: float | None = None  # Gaussian sigma in heatmap cells; None: acrloss.models.heatmap.default_sigma
    decoder: str = Decoder.KEYPOSS.value  # the in-model decoder (validation NME, best.h5)
    fg_weight: float = 10.0  # heatmap MSE weight 1 + w * target (w = 0: plain MSE)

    def __post_init__(self) -> None:
        self.alpha = _number("HeatmapConfig", "alpha", self.alpha, 0.0, strict=True)
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1):
            raise ValueError(f"HeatmapConfig.size must be an integer >= 1 (or None: input/4), got {self.size!r}")
        if self.sigma is not None:
            self.sigma = _number("HeatmapConfig", "sigma", self.sigma, 0.0, strict=True)
        self.decoder = Decoder.parse(self.decoder).value
        self.fg_weight = _number("HeatmapConfig", "fg_weight", self.fg_weight, 0.0, strict=False)


@dataclass
class MusicaConfig(FamilyConfig, family="musica"):
    """MuSiCa (:mod:`acrloss.models.musica`): the weight of the per-stage error-prediction
    term and the cascade's architecture (:func:`acrloss.models.musica.build_musica` keywords,
    :meth:`model_options`; its input size is ``TrainConfig.crop.input_size``)."""

    error_weight: float = 0.1  # weight of the per-stage error-prediction term of the loss
    stage_levels: tuple[int, ...] = (2, 1, 0, 0)  # pyramid level per stage (0 full size, 1 half, 2 quarter)
    stage_points: tuple = ("coarse", "half", "all", "all")  # per stage "all" | "half" | "coarse" | point indices
    patch_size: int = 12  # encoder patch side P (a multiple of 4); P + 2 pixels are sampled
    channels: tuple[int, int] = (16, 32)  # the patch encoder's two convolution widths
    centre: int = 2  # side of the finer encoder level's central window
    gate_units: int = 16  # bottleneck of the patch attention gate
    patch_units: int = 16  # features per patch after the projection
    hidden_units: int = 128  # the recurrent state
    grey: bool = True  # grey pyramid (else RGB)
    normalize_patches: bool = True  # standardize each patch

    def __post_init__(self) -> None:
        def ints(name: str, value: object, minimum: int) -> tuple[int, ...]:
            values = tuple(value) if isinstance(value, (list, tuple)) else None
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
                raise ValueError(f"MusicaConfig.{name} must be a non-empty list of integers >= {minimum}, got {value!r}")
            return values

        self.error_weight = _number("MusicaConfig", "error_weight", self.error_weight, 0.0, strict=False)
        self.stage_levels = ints("stage_levels", self.stage_levels, 0)
        self.channels = ints("channels", self.channels, 1)
        if len(self.channels) != 2:
            raise ValueError(f"MusicaConfig.channels must be two widths, got {self.channels!r}")
        if not isinstance(self.stage_points, (list, tuple)) or len(self.stage_points) != len(self.stage_levels):
            raise ValueError(f"MusicaConfig.stage_points must list one subset per stage ({len(self.stage_levels)}), "
                             f"got {self.stage_points!r}")
        self.stage_points = tuple(p if isinstance(p, str) else ints("stage_points", p, 0) for p in self.stage_points)
        for name in ("patch_size", "centre", "gate_units", "patch_units", "hidden_units"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MusicaConfig.{name} must be an integer >= 1, got {v!r}")
        for name in ("grey", "normalize_patches"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"MusicaConfig.{name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def architecture_fields(cls) -> list[str]:
        """The fields that are :func:`acrloss.models.musica.build_musica` keywords (all but ``error_weight``)."""
        return [f.name for f in dataclasses.fields(cls) if f.name != "error_weight"]

    def model_options(self) -> dict:
        """The :func:`acrloss.models.musica.build_musica` keywords (all but ``input_size``)."""
        return {name: getattr(self, name) for name in self.architecture_fields()}


# -- reading configs written before the nested loss / family configs (issue 14) --------------
#: their loss settings: old name -> LossConfig field
_FLAT_LOSS = {"loss": "name", "acr_lambda": "acr_lambda", "acr_scale": "acr_scale"}
#: their family settings with the old defaults (another family's setting at its default is dropped)
_FLAT_FAMILY_DEFAULTS: dict[str, Any] = {"alpha": 1.0, "head": "gap", "heatmap_size": None, "heatmap_sigma": None,
                                         "decoder": "keyposs", "heatmap_fg_weight": 10.0, "musica_error_weight": 0.1,
                                         "musica_options": {}}
#: per family: old name -> field of its config ("musica_options" held a dict of MusicaConfig fields)
_FLAT_FAMILY_FIELDS: dict[str, dict[str, str]] = {
    "regression": {"alpha": "alpha", "head": "head"},
    "heatmap": {"alpha": "alpha", "heatmap_size": "size", "heatmap_sigma": "sigma", "decoder": "decoder",
                "heatmap_fg_weight": "fg_weight"},
    "musica": {"musica_error_weight": "error_weight", "musica_options": "*"},
}
#: the architectures of that time -> their family
_FLAT_ARCH_FAMILY = {"mnv2": "regression", "efficientnet_b0": "regression", "efficientnet_b3": "regression",
                     "mnv2_heatmap": "heatmap", "musica": "musica"}


def is_flat_settings(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` are the flat settings of a run or shipped model from before the nested
    loss / family configs (``loss`` a name, ``alpha``, ``heatmap_size`` ... beside the common
    settings); :meth:`TrainConfig.from_dict` reads both."""
    return ("loss" in data and not isinstance(data["loss"], Mapping)) or any(
        name in data for name in (*_FLAT_LOSS, *_FLAT_FAMILY_DEFAULTS) if name != "loss")


def _at_old_default(name: str, value: Any) -> bool:
    """Whether a flat family setting holds its old default (``musica_options``: ``{}`` or every
    MusicaConfig field at its default, as older and newer flat configs wrote it)."""
    if name == "musica_options":
        return MusicaConfig.from_dict(value or {}) == MusicaConfig()
    return value == _FLAT_FAMILY_DEFAULTS[name]


def _nest_flat_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat settings (:func:`is_flat_settings`) in the nested form: the loss settings under
    ``"loss"``, those of the architecture's family under ``"model"``; another family's setting
    away from its old default is a :class:`TaskConfigError`."""
    data = dict(data)
    if isinstance(data.get("loss"), Mapping) or "model" in data:
        raise ValueError("TrainConfig: the settings mix the flat form (alpha, heatmap_size ...) with the nested one "
                         "(loss / model sections)")
    loss = {new: data.pop(old) for old, new in _FLAT_LOSS.items() if old in data}
    flat = {name: data.pop(name) for name in _FLAT_FAMILY_DEFAULTS if name in data}
    arch = str(data.get("arch", ModelArch.MNV2.value)).lower()
    if arch not in _FLAT_ARCH_FAMILY:
        raise ValueError(f"TrainConfig: flat settings (from before the family configs) of an unknown architecture {arch!r}")
    family = _FLAT_ARCH_FAMILY[arch]
    own = _FLAT_FAMILY_FIELDS[family]
    model: dict[str, Any] = {"family": family}
    foreign = []
    for name, value in flat.items():
        if own.get(name) == "*":
            model.update(value or {})
        elif name in own:
            model[own[name]] = value
        elif not _at_old_default(name, value):
            foreign.append(name)
    if foreign:
        raise TaskConfigError(f"setting(s) {foreign} do not apply to arch {arch!r}")
    return {**data, "loss": loss, "model": model}


@dataclass
class TrainConfig:
    """Everything a training run depends on: the common settings, the loss (:class:`LossConfig`)
    and the model family's own settings (``model``, a :class:`FamilyConfig`)."""

    arch: str = ModelArch.MNV2.value
    dataset: str = DatasetName.w300.value
    loss: LossConfig = field(default_factory=LossConfig)
    # the family config of the arch's task (acrloss.tasks.TASKS: RegressionConfig for mnv2 / efficientnet_*,
    # HeatmapConfig for mnv2_heatmap, MusicaConfig for musica); None: that family's defaults, filled in by the
    # task; another family's config is a TaskConfigError naming both
    model: FamilyConfig | None = None
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    start: str = "random"  # random | imagenet (MobileNetV2, converted torchvision weights) | a weights path
    # a full-model checkpoint (.h5, same arch and input size) whose weights replace the start,
    # e.g. to continue a finished run with a new schedule; recorded in config.json
    init_weights: str | None = None
    preprocessing: str | None = None  # unit | imagenet; None: imagenet for start=imagenet, else unit
    workers: int = 2  # threads decoding, cropping and augmenting (acrloss.data_prep.pipeline)
    image_cache_mb: int = 1024  # memory for decoded images, per sequence (training, validation; 0: none)
    max_train_faces: int | None = None
    # user data only (dataset images / coco; acrloss.config.user_spec): the horizontal mirror
    # map (None: flips disabled, except 68 points, which default to the 300-W scheme) and the
    # NME normalization (a pair of point indices or "box"; None: "box")
    user_mirror: list[int] | str | None = None  # a map, "none", or None (not given)
    user_norm_points: list[int] | str | None = None
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
    # -- devices and precision (issue 16; acrloss.distribution) -------------------------------
    # data-parallel devices: "auto" (every GPU, else one CPU) or a count; batch_size is the
    # global batch, split evenly over them, and learning_rate is the rate for that global batch
    devices: str | int = AUTO_DEVICES
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16 (loss and metrics stay float32)

    def __post_init__(self) -> None:
        if not isinstance(self.loss, LossConfig):
            raise ValueError(f"TrainConfig.loss must be a LossConfig, got {self.loss!r}")
        if self.model is not None and not isinstance(self.model, FamilyConfig):
            raise ValueError(f"TrainConfig.model must be a family config (FamilyConfig) or None, got {self.model!r}")
        if isinstance(self.crop, dict):  # from config.json
            self.crop = CropConfig(**self.crop)
        if isinstance(self.curriculum, dict):
            self.curriculum = CurriculumConfig(**self.curriculum)
        self.validate_recipe()
        self.devices = parse_devices(self.devices)
        if int(self.workers) < 1 or int(self.image_cache_mb) < 0:
            raise ValueError(f"TrainConfig: workers must be >= 1 and image_cache_mb >= 0, got {self.workers} and {self.image_cache_mb}")
        self.precision = parse_precision(self.precision)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """The config of a saved run: a ``config.json`` (:meth:`to_dict`) or the ``settings`` of a
        shipped model's JSON (``pre_trained_models/*.json``), old ones included: the flat settings
        written before the nested loss / family configs (:func:`is_flat_settings`), fields added
        since take their defaults; fields no longer known are an error naming them."""
        data = _nest_flat_settings(data) if is_flat_settings(data) else dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown settings {unknown}")
        if "loss" in data:
            data["loss"] = LossConfig.from_dict(data["loss"])
        if data.get("model") is not None:
            data["model"] = FamilyConfig.from_dict(data["model"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``config.json``; tuples as lists): the common ones, ``"loss"`` and
        ``"model"`` (tagged with its family); :meth:`from_dict` reads them back."""
        data = json.loads(json.dumps(dataclasses.asdict(self), default=str))
        data["model"] = None if self.model is None else self.model.to_dict()
        return data

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
