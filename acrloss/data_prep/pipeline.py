"""Training/evaluation batches as a ``keras.utils.PyDataset`` (NumPy + OpenCV only).

Images are decoded per batch (nothing is held in memory for the whole set); worker
threads (OpenCV releases the GIL) use both cores.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import keras
import numpy as np

from acrloss.config import AugmentConfig, CropConfig
from acrloss.data_prep.augment import photometric, random_geometry
from acrloss.data_prep.crop import CropTransform, normalize
from acrloss.data_prep.datasets import Sample
from acrloss.data_prep.images import read_image

if TYPE_CHECKING:  # the codec's encoder is NumPy; only its type is needed here
    from acrloss.codecs.heatmap import HeatmapCodec


def sample_crop(sample: Sample, crop: CropConfig) -> CropTransform:
    """The un-augmented crop of a sample: its given box, else its landmark box."""
    if sample.box is not None:
        return CropTransform.from_box(sample.box, crop.input_size, crop.margin)
    return CropTransform.from_points(sample.points, crop.input_size, crop.margin)


def normalized_labels(samples: Sequence[Sample], crop: CropConfig) -> np.ndarray:
    """Flattened normalized ``(M, 2N)`` labels of the un-augmented crops (no pixels read)."""
    out = [normalize(sample_crop(s, crop).forward(s.points), crop.input_size).reshape(-1) for s in samples]
    return np.stack(out).astype(np.float32)


class LandmarkSequence(keras.utils.PyDataset):
    """Batches ``(images, targets)``.

    ``images``: float32 ``(B, S, S, 3)`` RGB in [0, 255] (models normalize internally).
    ``targets``: float32 ``(B, 2N)`` normalized ``[x0, y0, ...]``; when ``phi_table``
    (``(M, L, 2N)``, from :func:`acrloss.pca_utility.phi_table`) is given, ``(B, 4N)``: the
    points followed by Φ at the current ``phi_level`` (set by the curriculum callback).
    With ``return_transforms`` the crop transforms come as a third element (evaluation).

    With a heatmap ``codec`` (:class:`acrloss.codecs.HeatmapCodec`, its ``input_size`` equal
    to the crop's) ``targets`` is a dict: ``"heatmaps"`` float32 ``(B, h, h, N)``, the codec's
    Gaussian encoding of the (augmented, flipped) crop points, and ``"landmarks"`` ``(B, 2N)``
    as above (for the NME metric). ``codec`` and ``phi_table`` exclude each other.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        crop: CropConfig,
        batch_size: int = 32,
        augment: AugmentConfig | None = None,
        mirror: Sequence[int] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        phi_table: np.ndarray | None = None,
        return_transforms: bool = False,
        workers: int = 2,
        codec: "HeatmapCodec | None" = None,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        if len(samples) == 0:
            raise ValueError("LandmarkSequence: no samples")
        if augment is not None and augment.flip_prob and mirror is None:
            raise ValueError("LandmarkSequence: flip augmentation needs the dataset's mirror map")
        if phi_table is not None and len(phi_table) != len(samples):
            raise ValueError(f"phi_table has {len(phi_table)} rows for {len(samples)} samples")
        if codec is not None and phi_table is not None:
            raise ValueError("LandmarkSequence: give a heatmap codec or a phi_table, not both")
        if codec is not None and int(codec.input_size) != int(crop.input_size):
            raise ValueError(f"LandmarkSequence: the heatmap codec is for input {codec.input_size}, the crop is {crop.input_size} px")
        self.codec = codec
        self.samples = list(samples)
        self.crop = crop
        self.batch_size = int(batch_size)
        self.augment = augment
        self.mirror = None if mirror is None else np.asarray(mirror)
        self.shuffle = shuffle
        self.seed = seed
        self.phi_table = phi_table
        self.phi_level = 0
        self.return_transforms = return_transforms
        self.epoch = 0
        self._order = np.arange(len(self.samples))
        self._reshuffle()

    def _reshuffle(self) -> None:
        if self.shuffle:
            self._order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.samples))

    def __len__(self) -> int:
        return int(np.ceil(len(self.samples) / self.batch_size))

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._reshuffle()

    def load(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, CropTransform, bool]:
        """One sample as (crop image uint8, crop points (N, 2), crop transform, flipped)."""
        sample = self.samples[index]
        image = read_image(sample.image_path)
        transform = sample_crop(sample, self.crop)
        flipped = False
        if self.augment is not None and rng is not None:
            geometry, flipped = random_geometry(rng, self.augment, self.crop.input_size, self.crop.margin)
            transform = transform.then(geometry)
        crop = transform.warp(image)
        points = transform.forward(sample.points)
        if flipped:
            points = points[self.mirror]
        if self.augment is not None and rng is not None:
            crop = photometric(crop, rng, self.augment, face_px=self.crop.input_size / (1.0 + self.crop.margin))
        return crop, points, transform, flipped

    def __getitem__(self, idx: int):
        ids = self._order[idx * self.batch_size : (idx + 1) * self.batch_size]
        rng = np.random.default_rng((self.seed, self.epoch, idx)) if self.augment is not None else None
        size = self.crop.input_size
        images = np.empty((len(ids), size, size, 3), np.float32)
        coords = np.empty((len(ids), 2 * len(self.samples[ids[0]].points)), np.float32)
        phis = np.empty_like(coords) if self.phi_table is not None else None
        crop_pts = np.empty((len(ids), coords.shape[1] // 2, 2)) if self.codec is not None else None
        transforms = []
        for row, i in enumerate(ids):
            crop, points, transform, flipped = self.load(int(i), rng)
            images[row] = crop
            coords[row] = normalize(points, size).reshape(-1)
            if crop_pts is not None:
                crop_pts[row] = points
            transforms.append(transform)
            if phis is not None:
                phi = self.phi_table[i, self.phi_level].reshape(-1, 2)
                phis[row] = (phi[self.mirror] if flipped else phi).reshape(-1)
        targets = coords if phis is None else np.concatenate([coords, phis], axis=1)
        if crop_pts is not None:  # encoded after the augmentation and flip, from the crop points
            targets = {"heatmaps": self.codec.encode_batch(crop_pts), "landmarks": coords}
        if self.return_transforms:
            return images, targets, transforms
        return images, targets
