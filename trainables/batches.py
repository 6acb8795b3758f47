"""Batches of a split on the training device, augmented there in whole batches (crop with padding,
flips) and normalised: no per-sample PIL work in the hot loop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from tunelab.trainables.image_folders import DecodeDataset, decoded_batches
from tunelab.trainables.splits import ArraySplit, FolderSplit


def iterate_batches(split: ArraySplit | FolderSplit, batch_size: int, *, device: torch.device,
                    shuffle: bool, generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) on `device`; shuffled with `generator` when asked."""
    n = len(split)
    if isinstance(split, FolderSplit):
        sampler = torch.randperm(n, generator=_cpu_twin(generator)).tolist() if shuffle else range(n)
        dataset = DecodeDataset(split.paths, split.labels, split.image_size, split.resize)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                             num_workers=split.num_workers, drop_last=drop_last,
                                             pin_memory=device.type == "cuda", persistent_workers=False)
        for images, labels in decoded_batches(loader):
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        return
    order = torch.randperm(n, generator=generator, device=split.labels.device) if shuffle else None
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield split.images[start:start + batch_size], split.labels[start:start + batch_size]
        else:
            index = order[start:start + batch_size]
            yield split.images[index], split.labels[index]


def _cpu_twin(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None or generator.device.type == "cpu":
        return generator
    twin = torch.Generator()
    twin.manual_seed(generator.initial_seed())
    return twin


@dataclass(frozen=True)
class Augment:
    """Batched augmentation on uint8 images, run on the training device."""

    crop_padding: int = 0
    hflip: bool = False
    vflip: bool = False

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.crop_padding > 0:
            images = random_crop(images, self.crop_padding, generator)
        if self.hflip:
            images = random_flip(images, dim=3, generator=generator)
        if self.vflip:
            images = random_flip(images, dim=2, generator=generator)
        return images


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None) -> torch.Tensor:
    """Zero-pad by `padding` then take one random H x W window per image, in one gather."""
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dev = images.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chans = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_flip(images: torch.Tensor, dim: int, generator: torch.Generator | None) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(dim), images)


class Normalizer:
    """uint8 -> float, per-channel standardised, in the model's memory format."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool = False):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
