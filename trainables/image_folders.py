"""`imagefolder:PATH`: one sub-folder per class; `PATH/train` + `PATH/test` when present.

Small folders are decoded once and held as one uint8 tensor; folders too large for memory stream
through a DataLoader whose workers only decode and resize (augmentation stays batched on the
device)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from tunelab.trainables.configs import DataOptions
from tunelab.core.errors import DataError
from tunelab.trainables.splits import (TEST_FRACTION, TEST_SPLIT_SEED, ArraySplit, DatasetBundle, FolderSplit,
                                      channel_stats, stratified_split)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def scan_image_folder(root: Path) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, class names) of a one-sub-folder-per-class tree."""
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist or is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for index, cls in enumerate(classes):
        found = [f for f in sorted((root / cls).rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        if not found and len(classes) > 1:
            # an empty class folder would be a class no image can teach: refused, never a silent extra class
            raise DataError(f"class folder {str(root / cls)!r} holds no images; add images or remove the folder "
                            f"(image types: {', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += [str(f) for f in found]
        labels += [index] * len(found)
    if not paths:
        raise DataError(f"image folder {str(root)!r} holds no images; expected one sub-folder per class "
                        f"with files of type {', '.join(sorted(IMAGE_SUFFIXES))}")
    if len(set(labels)) < 2:
        raise DataError(f"image folder {str(root)!r} has images of {len(set(labels))} class; "
                        "classification needs at least 2 class sub-folders")
    return paths, labels, classes


def decode_image(path: str, size: int, resize: str) -> torch.Tensor:
    """Decode one file to a uint8 (3, size, size) tensor."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if resize == "stretch":
                img = img.resize((size, size), Image.BILINEAR)
            else:
                scale = size / min(img.size)
                w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
                img = img.resize((w, h), Image.BILINEAR)
                left, top = (w - size) // 2, (h - size) // 2
                img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"image {path!r} cannot be read: {reason[:200]}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class DecodeDataset(torch.utils.data.Dataset):
    """Decodes in DataLoader workers. A file that cannot be read comes back as its error message
    (with a blank image) instead of an exception: a worker's exception reaches the main process
    with the worker's whole traceback folded into its message."""

    def __init__(self, paths, labels, size, resize):
        self.paths, self.labels, self.size, self.resize = paths, labels, size, resize

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return decode_image(self.paths[i], self.size, self.resize), self.labels[i], ""
        except DataError as exc:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), self.labels[i], str(exc)


def decoded_batches(batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of DataLoader batches from DecodeDataset; the first unreadable file raises."""
    for images, labels, errors in batches:
        failed = next((e for e in errors if e), None)
        if failed:
            raise DataError(failed)
        yield images, labels


def _decode_all(paths: list[str], labels: torch.Tensor, size: int, resize: str, workers: int) -> ArraySplit:
    loader = torch.utils.data.DataLoader(DecodeDataset(paths, labels, size, resize), batch_size=256,
                                         num_workers=workers)
    images, labs = zip(*decoded_batches(loader)) if len(paths) else ((), ())
    return ArraySplit(torch.cat(images), torch.cat(labs))


def check_split_sizes(root: Path, labels: list[int], classes: list[str], parts: int) -> None:
    """Every class needs an image in each of `parts` splits (train and val, plus test when carved)."""
    counts = np.bincount(np.asarray(labels), minlength=len(classes))
    small = int(np.argmin(counts))
    if counts[small] < parts:
        carved = "train, val and test" if parts == 3 else "train and val"
        raise DataError(f"image folder {str(root)!r}: class {classes[small]!r} has {counts[small]} image(s); "
                        f"at least {parts} per class are needed ({carved} each get one)")


STATS_SAMPLE = 512  # images decoded for the normalisation statistics of a folder too large for memory


def stats_sample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most `limit` images, an equal share from every class, chosen with `seed`.

    Paths are sorted by class, so the first `limit` would describe the first class or two only.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    share = -(-limit // max(len(classes), 1))
    picked = [rng.permutation(np.flatnonzero(labels == c))[:share] for c in classes]
    chosen = np.concatenate(picked) if picked else np.array([], dtype=np.int64)
    if len(chosen) > limit:
        chosen = rng.choice(chosen, limit, replace=False)
    return np.sort(chosen)


def load_image_folder(options: DataOptions) -> DatasetBundle:
    location = options.dataset.split(":", 1)[1]
    if not location.strip():
        raise DataError("dataset='imagefolder:' names no folder; give imagefolder:PATH (one sub-folder per class)")
    root = Path(os.path.expanduser(location))
    size = options.image_size or 224
    if options.resize not in ("crop", "stretch"):
        raise DataError(f"resize={options.resize!r} is not valid; choose from: crop, stretch")
    if (root / "train").is_dir():
        paths, labels, classes = scan_image_folder(root / "train")
        test_root = root / "test" if (root / "test").is_dir() else root / "val"
        test_paths, test_labels, test_classes = scan_image_folder(test_root)
        if test_classes != classes:
            raise DataError(f"{str(test_root)!r} has classes {test_classes[:5]}... that differ from train's")
        check_split_sizes(root / "train", labels, classes, parts=2)
    else:
        paths, labels, classes = scan_image_folder(root)
        check_split_sizes(root, labels, classes, parts=3)
        rest, held = stratified_split(np.asarray(labels), TEST_FRACTION, TEST_SPLIT_SEED)
        test_paths, test_labels = [paths[i] for i in held], [labels[i] for i in held]
        paths, labels = [paths[i] for i in rest], [labels[i] for i in rest]
    train_idx, val_idx = stratified_split(np.asarray(labels), options.val_fraction, options.split_seed)
    parts = {
        "train": ([paths[i] for i in train_idx], [labels[i] for i in train_idx]),
        "val": ([paths[i] for i in val_idx], [labels[i] for i in val_idx]),
        "test": (test_paths, test_labels),
    }
    decoded_mb = (len(paths) + len(test_paths)) * 3 * size * size / 2**20
    workers = min(4, os.cpu_count() or 1)
    if decoded_mb <= options.max_memory_mb:
        splits = {k: _decode_all(paths, torch.as_tensor(labels), size, options.resize, workers)
                  for k, (paths, labels) in parts.items()}
        mean, std = channel_stats(splits["train"].images)
    else:
        splits = {k: FolderSplit(paths, torch.as_tensor(labels), size, options.resize, workers)
                  for k, (paths, labels) in parts.items()}
        pick = stats_sample(splits["train"].labels.numpy(), STATS_SAMPLE, options.split_seed)
        sample = _decode_all([splits["train"].paths[i] for i in pick], splits["train"].labels[pick], size,
                             options.resize, workers)
        mean, std = channel_stats(sample.images)
    return DatasetBundle(f"imagefolder:{root}", splits["train"], splits["val"], splits["test"], classes, mean,
                         std, default_hflip=True, image_size=size, meta={"root": str(root)})


