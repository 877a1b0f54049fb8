"""Training data sources: an image folder, in-memory tensors, or the streamed synthetic face renderer.

Every source is an infinite iterator of float32 batches [B, 3, R, R] in [-1, 1] for one DDP rank. Its whole state
is the number of batches it has handed out (``state_dict()`` / ``load_state_dict()``), and every batch is a pure
function of (seed, rank, world size, position), so a resumed run sees exactly the batches it would have seen.

Indexed sources (folder, tensors) walk epochs: epoch ``e`` is the permutation drawn from
``numpy SeedSequence([seed, e])``; rank ``r`` of ``W`` takes entries ``r, r + W, ...`` (each rank the same count).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SYNTH_PREFIX = "synth:"


def _check_shard(batch_size: int, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not within a world of {world_size} processes")


class DataSource:
    """Base of the sources: an infinite iterator of [batch_size, 3, R, R] float32 batches in [-1, 1]."""

    def __init__(self, *, resolution: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        _check_shard(batch_size, rank, world_size)
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.position = 0  # batches handed out so far

    description = "data"

    def batch(self, position: int) -> torch.Tensor:
        """The batch at ``position`` (pure: no state changes). [B, 3, R, R]"""
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        x = self.batch(self.position)
        self.position += 1
        return x

    def state_dict(self) -> dict:
        return {"position": self.position, "world_size": self.world_size, "description": self.description}

    def load_state_dict(self, state: dict) -> None:
        position = int(state["position"])
        if position < 0:
            raise ValueError(f"invalid data position {position}")
        self.position = position


class IndexedSource(DataSource):
    """A finite set of images visited in seeded, per-rank-sharded epochs; subclasses implement ``load(i)``."""

    def __init__(self, count: int, **kwargs):
        super().__init__(**kwargs)
        if count < self.world_size:
            raise ValueError(f"{self.description} holds {count} images; at least one per process "
                             f"({self.world_size}) is needed")
        self.count = int(count)
        self.per_rank = count // self.world_size
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 [3, R, R] in [-1, 1]."""
        raise NotImplementedError

    def _shard(self, epoch: int) -> np.ndarray:
        """This rank's image indices in ``epoch`` [per_rank]."""
        if epoch != self._perm_epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
            perm = rng.permutation(self.count)
            self._perm = perm[self.rank::self.world_size][: self.per_rank]
            self._perm_epoch = epoch
        return self._perm

    def sample_index(self, k: int) -> int:
        """Dataset index of this rank's ``k``-th sample."""
        epoch, j = divmod(k, self.per_rank)
        return int(self._shard(epoch)[j])

    def batch(self, position: int) -> torch.Tensor:
        first = position * self.batch_size
        return torch.stack([self.load(self.sample_index(first + i)) for i in range(self.batch_size)])


def find_images(root: str | os.PathLike) -> list[Path]:
    """PNG/JPEG files under ``root`` (recursive), sorted by relative path so every machine agrees on the order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no PNG or JPEG images under {root}")
    return files


def load_image(path: str | os.PathLike, resolution: int) -> torch.Tensor:
    """An image file center-cropped to a square and resized (Lanczos) to ``resolution``: [3, R, R] in [-1, 1]."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
        if s != resolution:
            im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)  # [R, R, 3]
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).to(torch.float32)  # [3, R, R]
    return x / 127.5 - 1.0


class ImageFolderSource(IndexedSource):
    """PNG/JPEG images of a folder tree, center-cropped and resized to the training resolution."""

    def __init__(self, root: str | os.PathLike, **kwargs):
        self.root = Path(root)
        self.files = find_images(self.root)
        self.description = f"image folder {self.root} ({len(self.files)} images)"
        super().__init__(len(self.files), **kwargs)

    def load(self, index: int) -> torch.Tensor:
        try:
            return load_image(self.files[index], self.resolution)
        except OSError as e:
            raise ValueError(f"cannot read training image {self.files[index]}: {e}") from None


class TensorSource(IndexedSource):
    """Images held in memory: float [N, 3, R, R] in [-1, 1] (for tests and small experiments)."""

    def __init__(self, images: torch.Tensor, **kwargs):
        r = kwargs.get("resolution")
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (r, r):
            raise ValueError(f"images must be [N, 3, {r}, {r}], got {tuple(images.shape)}")
        self.images = images.detach().to("cpu", torch.float32)
        self.description = f"{len(images)} in-memory images"
        super().__init__(len(images), **kwargs)

    def load(self, index: int) -> torch.Tensor:
        return self.images[index]


class SynthSource(DataSource):
    """Faces streamed from ``engine.synth``: this rank's ``k``-th batch holds samples
    ``(k * world_size + rank) * batch_size + i`` of the run's seed, so no face repeats and resume is exact."""

    def __init__(self, domain: str, **kwargs):
        super().__init__(**kwargs)
        self.domain = domain
        self.description = f"{SYNTH_PREFIX}{domain}"
        self._sample_batch = _synth_sampler()

    def batch(self, position: int) -> torch.Tensor:
        start = (position * self.world_size + self.rank) * self.batch_size
        images, _, _ = self._sample_batch(self.batch_size, size=self.resolution, domain=self.domain,
                                          rng_or_seed=self.seed, start_index=start)
        x = torch.as_tensor(images, dtype=torch.float32)
        if x.shape != (self.batch_size, 3, self.resolution, self.resolution):
            raise ValueError(f"engine.synth returned images of shape {tuple(x.shape)}, expected "
                             f"{(self.batch_size, 3, self.resolution, self.resolution)}")
        return x


def _synth_sampler():
    try:
        from engine.synth import sample_batch
    except ImportError as e:
        raise ValueError(f"the synthetic data source needs engine.synth, which cannot be imported ({e}); "
                         "train on an image folder instead") from None
    return sample_batch


def open_source(spec: str, *, resolution: int, batch_size: int, seed: int, rank: int = 0,
                world_size: int = 1) -> DataSource:
    """The source a data spec names: ``synth:DOMAIN`` (e.g. ``synth:photo``) or an image folder path."""
    kwargs = dict(resolution=resolution, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)
    spec = str(spec)
    if spec.startswith(SYNTH_PREFIX):
        domain = spec[len(SYNTH_PREFIX):]
        if not domain:
            raise ValueError(f"data spec {spec!r} names no domain: use e.g. 'synth:photo'")
        return SynthSource(domain, **kwargs)
    return ImageFolderSource(spec, **kwargs)


__all__ = ["DataSource", "IndexedSource", "ImageFolderSource", "TensorSource", "SynthSource", "open_source",
           "find_images", "load_image", "SYNTH_PREFIX"]
