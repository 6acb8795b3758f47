"""Datasets in memory or on disk, split train / val / test: the types every loader returns, and the
stratified splits and statistics they share.

Validation data is always carved from the training data (stratified, fixed `split_seed`), so a
search never sees test images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.trainables.configs import DataOptions
from tunelab.core.errors import DataError


# Held-out test share for sets that ship without a test split (digits, a single image folder).
# Fixed: the test split must not move with any tuned value.
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 20240317


@dataclass
class ArraySplit:
    """A split held in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> "ArraySplit":
        if self.images.device == device:
            return self
        return ArraySplit(self.images.to(device), self.labels.to(device))

    def __reduce__(self):
        # Pickled as numpy arrays: Ray's object store hands those to every trial on a node
        # zero-copy from shared memory, so K trials hold one copy of the dataset, not K.
        return (_split_from_numpy, (self.images.cpu().numpy(), self.labels.cpu().numpy()))


def _split_from_numpy(images: np.ndarray, labels: np.ndarray) -> ArraySplit:
    import warnings

    with warnings.catch_warnings():  # read-only shared memory: the engine never writes to images
        warnings.simplefilter("ignore", UserWarning)
        return ArraySplit(torch.from_numpy(images), torch.from_numpy(labels))


@dataclass
class FolderSplit:
    """A split streamed from image files; workers decode and resize, nothing else."""

    paths: list[str]
    labels: torch.Tensor
    image_size: int
    resize: str
    num_workers: int = 2

    def __len__(self) -> int:
        return len(self.paths)

    def to(self, device: torch.device) -> "FolderSplit":
        return self


@dataclass
class DatasetBundle:
    """Train / val / test splits plus what a model and the normaliser need to know."""

    name: str
    train: ArraySplit | FolderSplit
    val: ArraySplit | FolderSplit
    test: ArraySplit | FolderSplit
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_hflip: bool
    image_size: int
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to(self, device: torch.device) -> "DatasetBundle":
        return DatasetBundle(self.name, self.train.to(device), self.val.to(device), self.test.to(device),
                             self.class_names, self.mean, self.std, self.default_hflip, self.image_size,
                             self.meta)




def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of each class held out, chosen with `seed`."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction {fraction!r} is out of range; allowed: (0, 1)")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        n_held = min(max(n_held, 1), len(idx) - 1) if len(idx) > 1 else 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def array_splits(images: torch.Tensor, labels: np.ndarray, options: DataOptions,
                  test: tuple[torch.Tensor, np.ndarray] | None):
    """Carve test (unless given) and val from the training data; return three ArraySplits."""
    if test is None:
        rest, test_idx = stratified_split(labels, TEST_FRACTION, TEST_SPLIT_SEED)
        test = (images[test_idx], labels[test_idx])
        images, labels = images[rest], labels[rest]
    train_idx, val_idx = stratified_split(labels, options.val_fraction, options.split_seed)

    def make(imgs, labs):
        return ArraySplit(imgs.contiguous(), torch.as_tensor(labs, dtype=torch.int64))

    return make(images[train_idx], labels[train_idx]), make(images[val_idx], labels[val_idx]), make(*test)


CHUNK = 4096  # images per step when a whole-dataset pass needs floats: memory stays ~CHUNK images


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 images on the 0..1 scale.

    Sums of pixel values and of their squares are integers, accumulated exactly in int64 chunk by
    chunk: a float64 copy of CIFAR-10's training set alone would be 1.1 GB.
    """
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    for start in range(0, len(images), CHUNK):
        x = images[start:start + CHUNK].to(torch.int64)
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    n = images.numel() // channels
    mean = total.double() / n
    var = (squares.double() - total.double() ** 2 / n) / max(n - 1, 1)
    std = (var.clamp_min(0).sqrt() / 255.0).clamp_min(1e-3)
    return tuple((mean / 255.0).tolist()), tuple(std.tolist())


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 (N, C, H, W) batch to size x size (antialiased bilinear), a chunk at a time."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), CHUNK):
        x = F.interpolate(images[start:start + CHUNK].float(), size=(size, size), mode="bilinear",
                          antialias=True, align_corners=False)
        out[start:start + CHUNK] = x.round().clamp(0, 255).to(torch.uint8)
    return out
