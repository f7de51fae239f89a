"""Training/evaluation batches as a ``keras.utils.PyDataset`` (NumPy + OpenCV only).

Feeding several devices (issue 16):

* ``workers`` threads decode, crop and augment the faces of a batch in parallel (OpenCV
  releases the GIL) and prepare the next ``prefetch`` batches of the epoch while the model
  trains on the current one.
* Decoded images are cached in memory up to ``cache_bytes`` (first come, first kept).
* A batch is a pure function of ``(seed, epoch, batch index, phi_level)``: the order comes
  from ``(seed, epoch)``, each face's augmentation from ``(seed, epoch, batch index, row)``.
  Prefetched batches are keyed by that state and recomputed when it changed, so a resumed
  run sees exactly the batches of the uninterrupted one. (Keras' own enqueuer is not used:
  it prepares batches before the callbacks have set the epoch's state, which made resumed
  runs, and runs with ``workers > 1``, differ.)
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
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

    ``workers``: threads per batch (1: everything in the calling thread, no prefetch);
    ``prefetch``: batches of the epoch prepared ahead; ``cache_bytes``: memory for decoded
    images (0: none). None of them changes a batch's content. ``shard=(p, P)``: this process
    (of P, multi-host training) gets the p-th contiguous block of every global batch, with
    the same augmentation as in the whole batch. ``multiple_of=N`` (N devices): the last,
    partial batch is cut to a multiple of N faces (up to N - 1 faces left out of that batch).
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
        prefetch: int = 2,
        cache_bytes: int = 0,
        shard: tuple[int, int] = (0, 1),
        multiple_of: int = 1,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)  # our own threads (module docstring)
        if int(workers) < 1 or int(prefetch) < 0 or int(cache_bytes) < 0:
            raise ValueError(f"LandmarkSequence: workers must be >= 1, prefetch and cache_bytes >= 0 "
                             f"(got {workers}, {prefetch}, {cache_bytes})")
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
        if not 0 <= int(shard[0]) < int(shard[1]):
            raise ValueError(f"LandmarkSequence: shard must be (index, count) with 0 <= index < count, got {shard}")
        self.shard = (int(shard[0]), int(shard[1]))
        if int(multiple_of) < 1 or len(samples) < int(multiple_of):
            raise ValueError(f"LandmarkSequence: multiple_of must be in [1, {len(samples)}], got {multiple_of}")
        self.multiple_of = int(multiple_of)
        self.epoch = 0
        self.threads = int(workers)
        self.prefetch = int(prefetch) if self.threads > 1 else 0
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[tuple, Future] = {}
        self._order = np.arange(len(self.samples))
        self._reshuffle()

    def __getstate__(self):  # picklable (no pool, lock or futures)
        state = dict(self.__dict__, _pool=None, _ahead={}, _lock=None)
        return state

    def __setstate__(self, state) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def close(self) -> None:
        """Stops the worker threads (they restart on the next batch)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._ahead = None, {}

    def __del__(self) -> None:
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _image(self, index: int) -> np.ndarray:
        """The decoded image of sample ``index`` (from the cache when it is there)."""
        image = self._cache.get(index)
        if image is not None:
            return image
        image = read_image(self.samples[index].image_path)
        if self.cache_bytes:
            with self._lock:
                if self._cached_bytes + image.nbytes <= self.cache_bytes and index not in self._cache:
                    image.setflags(write=False)
                    self._cache[index] = image
                    self._cached_bytes += image.nbytes
        return image

    def _reshuffle(self) -> None:
        if self.shuffle:
            self._order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.samples))

    def __len__(self) -> int:
        full, rest = divmod(len(self.samples), self.batch_size)
        return full + int(rest - rest % self.multiple_of > 0)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._reshuffle()

    def load(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, CropTransform, bool]:
        """One sample as (crop image uint8, crop points (N, 2), crop transform, flipped)."""
        sample = self.samples[index]
        image = self._image(index)
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

    def _state(self, idx: int) -> tuple:
        ids = self._order[idx * self.batch_size : (idx + 1) * self.batch_size]
        ids = ids[: len(ids) - len(ids) % self.multiple_of]  # devices split a batch evenly
        index, count = self.shard
        if count > 1:  # this process's block of the global batch; rows keep their global number (seeds)
            if len(ids) % count:
                raise ValueError(f"LandmarkSequence: batch {idx} has {len(ids)} faces, not a multiple of the {count} processes")
            block = len(ids) // count
            return (idx, self.epoch, self.phi_level, tuple(ids[index * block : (index + 1) * block]), index * block)
        return (idx, self.epoch, self.phi_level, tuple(ids), 0)

    def __getitem__(self, idx: int):
        if idx < 0 or idx >= len(self):
            raise IndexError(f"batch {idx} of {len(self)}")
        if self.threads <= 1:
            return self._batch(*self._state(idx))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="acrloss-batch")
        key = self._state(idx)
        future = self._ahead.pop(key, None)
        for stale in [k for k in self._ahead if k[1:3] != key[1:3] or k[0] <= idx]:  # another epoch/level, or passed
            self._ahead.pop(stale).cancel()
        for ahead in range(idx + 1, min(len(self), idx + 1 + self.prefetch)):
            state = self._state(ahead)
            if state not in self._ahead:
                self._ahead[state] = self._pool.submit(self._batch, *state)
        return future.result() if future is not None else self._batch(*key)

    def _batch(self, idx: int, epoch: int, phi_level: int, ids: tuple, first_row: int = 0):
        """The batch ``idx`` of ``epoch`` at ``phi_level`` (faces ``ids``, the first one at row
        ``first_row`` of the global batch): a pure function of them."""
        augment = self.augment is not None
        size = self.crop.input_size
        images = np.empty((len(ids), size, size, 3), np.float32)
        coords = np.empty((len(ids), 2 * len(self.samples[ids[0]].points)), np.float32)
        phis = np.empty_like(coords) if self.phi_table is not None else None
        crop_pts = np.empty((len(ids), coords.shape[1] // 2, 2)) if self.codec is not None else None
        transforms = [None] * len(ids)

        def one(row: int) -> None:
            i = int(ids[row])
            rng = np.random.default_rng((self.seed, epoch, idx, first_row + row)) if augment else None
            crop, points, transform, flipped = self.load(i, rng)
            images[row] = crop
            coords[row] = normalize(points, size).reshape(-1)
            if crop_pts is not None:
                crop_pts[row] = points
            transforms[row] = transform
            if phis is not None:
                phi = self.phi_table[i, phi_level].reshape(-1, 2)
                phis[row] = (phi[self.mirror] if flipped else phi).reshape(-1)

        if self._pool is not None and len(ids) > 1 and not threading.current_thread().name.startswith("acrloss-batch"):
            list(self._pool.map(one, range(len(ids))))  # the faces of this batch in parallel
        else:
            for row in range(len(ids)):
                one(row)
        targets = coords if phis is None else np.concatenate([coords, phis], axis=1)
        if crop_pts is not None:  # encoded after the augmentation and flip, from the crop points
            targets = {"heatmaps": self.codec.encode_batch(crop_pts), "landmarks": coords}
        if self.return_transforms:
            return images, targets, transforms
        return images, targets
