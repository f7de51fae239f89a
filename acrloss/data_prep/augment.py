"""On-the-fly augmentation. Geometric changes are crop-space affine matrices (so the
image is warped once and the points follow exactly); photometric ones act on pixels."""
from __future__ import annotations


import cv2
import numpy as np

from acrloss.config import AugmentConfig


def flip_matrix(size: int) -> np.ndarray:
    """Horizontal mirror of a crop: x -> (size - 1) - x (0-based pixel centres)."""
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def box_jitter_matrix(shift: tuple[float, float], log_scale: float, size: int, margin: float) -> np.ndarray:
    """The crop-space 3x3 affine that turns the crop of a landmark box into the crop of a box
    whose centre moved by ``shift`` (x, y; in units of the landmark box's longer side) and whose
    side is ``exp(log_scale)`` times larger (same ``margin``): ``p' = c + (p - c - shift * L) / r``
    with ``c`` the crop centre and ``L = size / (1 + margin)`` the landmark side in crop pixels."""
    c = (size - 1) / 2.0
    side = size / (1.0 + margin)
    r = float(np.exp(log_scale))
    ex, ey = (float(v) * side for v in shift)
    return np.array([[1.0 / r, 0.0, c - (c + ex) / r], [0.0, 1.0 / r, c - (c + ey) / r], [0.0, 0.0, 1.0]])


def random_box_jitter(rng: np.random.Generator, cfg: AugmentConfig, size: int, margin: float) -> np.ndarray:
    """A detector-like box jitter (:func:`box_jitter_matrix`) with normal offsets and log-scale of
    ``cfg.box_jitter_shift`` / ``cfg.box_jitter_log_scale`` standard deviations, clipped at 2.5 sigma."""
    sx, sy = cfg.box_jitter_shift
    z = np.clip(rng.standard_normal(3), -2.5, 2.5)
    return box_jitter_matrix((z[0] * sx, z[1] * sy), z[2] * cfg.box_jitter_log_scale, size, margin)


def random_geometry(rng: np.random.Generator, cfg: AugmentConfig, size: int,
                    margin: float = 0.25) -> tuple[np.ndarray, bool]:
    """A random crop-space 3x3 affine (rotation, scale, shift about the centre, optional
    mirror, and with ``cfg.box_jitter_prob`` a detector-like box jitter applied first) and
    whether it mirrors. ``margin``: the crop's margin (for the jitter's landmark-side unit)."""
    c = (size - 1) / 2.0
    angle = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)) if cfg.rotation_deg else 0.0
    scale = rng.uniform(*cfg.scale_range) if cfg.scale_range[0] != cfg.scale_range[1] else cfg.scale_range[0]
    tx, ty = rng.uniform(-cfg.shift_frac, cfg.shift_frac, 2) * size if cfg.shift_frac else (0.0, 0.0)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    m = np.array([[cos, -sin, c - cos * c + sin * c + tx], [sin, cos, c - sin * c - cos * c + ty], [0, 0, 1.0]])
    flipped = bool(cfg.flip_prob and rng.random() < cfg.flip_prob)
    if flipped:
        m = m @ flip_matrix(size)
    if cfg.box_jitter_prob and rng.random() < cfg.box_jitter_prob:  # drawn last: other configs' streams unchanged
        m = m @ random_box_jitter(rng, cfg, size, margin)
    return m, flipped


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                face_px: float | None = None) -> np.ndarray:
    """Brightness/contrast, gamma, blur and a random occluding rectangle on an RGB uint8 crop,
    then the real-photo degradations of :func:`real_photo`. ``face_px``: the face's side in
    the crop (default: width / 1.25, the landmark box of a margin-0.25 crop)."""
    img = image.astype(np.float32)
    if cfg.brightness or cfg.contrast:
        alpha = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        beta = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness)
        img = img * alpha + beta
    if cfg.gamma_range[0] != cfg.gamma_range[1]:
        gamma = rng.uniform(*cfg.gamma_range)
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    img = np.clip(img, 0, 255).astype(np.uint8)
    if cfg.blur_prob and rng.random() < cfg.blur_prob:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    if cfg.occlusion_prob and rng.random() < cfg.occlusion_prob:
        h, w = img.shape[:2]
        ow = int(rng.uniform(0.1, cfg.occlusion_max_frac) * w)
        oh = int(rng.uniform(0.1, cfg.occlusion_max_frac) * h)
        x0 = int(rng.integers(0, max(w - ow, 1)))
        y0 = int(rng.integers(0, max(h - oh, 1)))
        img[y0 : y0 + oh, x0 : x0 + ow] = rng.integers(0, 256, 3, dtype=np.uint8)
    return real_photo(img, rng, cfg, face_px)


# ----------------------------------------------------------------- real-photo degradations
# None of these moves a pixel: the crop's points stay exactly where they are.
def greyscale(image: np.ndarray) -> np.ndarray:
    """The luma of an RGB uint8 image, repeated in three channels."""
    g = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.repeat(g[..., None], 3, axis=2)


def low_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by ``factor`` (< 1, area averaging) and enlarge back to the same size (bilinear).
    OpenCV's resize maps pixel centres ``(x + 0.5) * dst / src - 0.5`` both ways, so the
    round trip moves no point."""
    h, w = image.shape[:2]
    if factor >= 1.0:
        return image
    small = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    return cv2.resize(cv2.resize(image, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)


def motion_blur_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalized ``length`` x ``length`` (odd) line kernel at ``angle_deg``, point-symmetric
    about its centre (samples at +-t along the line, bilinear weights), so its centroid is the
    centre and blurring with it shifts nothing."""
    if length < 3 or length % 2 == 0:
        raise ValueError(f"motion_blur_kernel: length must be odd and >= 3, got {length}")
    k = np.zeros((length, length), np.float64)
    c = (length - 1) / 2.0
    a = np.deg2rad(angle_deg)
    for t in np.linspace(-c, c, 4 * length + 1):
        x, y = c + t * np.cos(a), c + t * np.sin(a)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if wgt > 0 and 0 <= x0 + dx < length and 0 <= y0 + dy < length:
                k[y0 + dy, x0 + dx] += wgt
    k = 0.5 * (k + k[::-1, ::-1])  # exact point symmetry despite floating-point rounding
    return (k / k.sum()).astype(np.float32)


def motion_blur(image: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Blur along a line (:func:`motion_blur_kernel`), anchored at the kernel's centre."""
    return cv2.filter2D(image, -1, motion_blur_kernel(length, angle_deg), anchor=(-1, -1), borderType=cv2.BORDER_REFLECT)


def jpeg_recompress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image as JPEG at ``quality`` (1..100) and decode it again."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        raise RuntimeError("jpeg_recompress: OpenCV could not encode the image")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def real_photo(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, face_px: float | None = None) -> np.ndarray:
    """Greyscale, low resolution (the face shrunk to ``cfg.lowres_face_px`` pixels and back),
    motion blur and JPEG re-compression, each with its probability (0 draws nothing from ``rng``).
    ``face_px``: the face's side in the crop (default: width / 1.25)."""
    img = image
    h, w = img.shape[:2]
    if cfg.grey_prob and rng.random() < cfg.grey_prob:
        img = greyscale(img)
    if cfg.lowres_prob and rng.random() < cfg.lowres_prob:
        face = float(face_px) if face_px else w / 1.25
        img = low_resolution(img, rng.uniform(*cfg.lowres_face_px) / face)
    if cfg.motion_blur_prob and rng.random() < cfg.motion_blur_prob:
        length = int(rng.choice(np.arange(3, int(cfg.motion_blur_max) + 1, 2)))
        img = motion_blur(img, length, rng.uniform(0.0, 180.0))
    if cfg.jpeg_prob and rng.random() < cfg.jpeg_prob:
        img = jpeg_recompress(img, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return img
