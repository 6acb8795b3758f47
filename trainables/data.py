"""Datasets by name, split train / val / test, served as uint8 batches augmented on the device.

- `digits`: scikit-learn's bundled 8x8 handwritten digits (1797 real images), the offline default.
- `cifar10`, `cifar100`: the original python-pickle batches from a local folder (downloaded with
  torchvision when the machine is online).
- `imagefolder:PATH`: one sub-folder per class; `PATH/train` + `PATH/test` when present.

Validation data is always carved from the training data (stratified, fixed `split_seed`), so a
search never sees test images. Small datasets are held as one uint8 tensor on the training
device and augmented there in whole batches (crop with padding, flips): no per-sample PIL work
in the hot loop. Folders too large for memory stream through a DataLoader with workers that
only decode and resize; augmentation stays batched on the device.
"""
from __future__ import annotations

import io
import os
import pickle
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.trainables import catalog
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.errors import DataError
from tunelab.trainables.registry import registrar
from tunelab.trainables.subsets import check_ids, check_per_class, keep_classes, parse_classes, per_class_index, take

DATA_DIR_ENV = "TUNELAB_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/tunelab/data"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
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


# name -> loader. A name ending in ':' takes a location after it (imagefolder:PATH).
_LOADERS: dict[str, Callable[[DataOptions], "DatasetBundle"]] = {}


register_dataset = registrar(_LOADERS, "dataset", listed=catalog.DATASETS)  # @register_dataset("name", ...) on a loader


dataset_names = catalog.dataset_names  # noqa: E305  (the choices the command line checks)


def dataset_loader(name: str) -> Callable[[DataOptions], "DatasetBundle"] | None:
    """The loader of `name` ('digits', or 'imagefolder:/data/x' by its prefix), None if unknown."""
    prefix = name.split(":", 1)[0] + ":" if ":" in name else None
    return _LOADERS.get(name) or (_LOADERS.get(prefix) if prefix else None)


def load_dataset(options: DataOptions) -> DatasetBundle:
    """Load a dataset by name; the result lives on the CPU (move it with `.to(device)`)."""
    loader = dataset_loader(options.dataset)
    if loader is None:
        raise DataError(f"dataset={options.dataset!r} is not known; choose from: {', '.join(dataset_names())}")
    bundle = loader(options)
    return select_subset(bundle, options) if options.classes or options.train_per_class else bundle


def select_subset(bundle: DatasetBundle, options: DataOptions) -> DatasetBundle:
    """`classes` and `train_per_class` applied to the carved splits (tunelab.trainables.subsets).

    The normalisation statistics stay those of the whole training split: every subset of a
    dataset sees pixels on the same scale (a backbone pretrained on classes 0-4 meets 5-9 as it
    met its own), and the scale does not move with the few images a low-data target keeps.
    """
    ids = parse_classes(options.classes) or tuple(range(bundle.num_classes))
    check_ids(options.classes, ids, bundle.name, bundle.num_classes)
    train, val, test = (keep_classes(split, ids) for split in (bundle.train, bundle.val, bundle.test))
    names = [bundle.class_names[i] for i in ids]
    if options.train_per_class:
        labels = train.labels.cpu().numpy()
        check_per_class(options.train_per_class, labels, names)
        index = torch.as_tensor(per_class_index(labels, options.train_per_class, options.split_seed))
        train = take(train, index, train.labels[index])
    meta = {**bundle.meta, "classes": list(ids), "train_per_class": options.train_per_class}
    return DatasetBundle(bundle.name, train, val, test, names, bundle.mean, bundle.std, bundle.default_hflip,
                         bundle.image_size, meta)


# ----------------------------------------------------------------------------- splitting

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


def _array_splits(images: torch.Tensor, labels: np.ndarray, options: DataOptions,
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


# ----------------------------------------------------------------------------- digits

@register_dataset("digits")
def _load_digits(options: DataOptions) -> DatasetBundle:
    from sklearn.datasets import load_digits

    size = options.image_size or 16
    digits = load_digits()
    # 0..16 grey levels -> 0..255, replicated to 3 channels so every zoo model applies.
    grey = torch.from_numpy(np.round(digits.images * (255.0 / 16.0)).astype(np.uint8))
    images = resize_uint8(grey[:, None].expand(-1, 3, -1, -1).contiguous(), size)
    labels = digits.target.astype(np.int64)
    train, val, test = _array_splits(images, labels, options, test=None)
    mean, std = channel_stats(train.images)
    return DatasetBundle("digits", train, val, test, [str(d) for d in range(10)], mean, std,
                         default_hflip=False, image_size=size)


# ----------------------------------------------------------------------------- CIFAR

_CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)],
                    test=["test_batch"], meta="batches.meta", label_key=b"labels",
                    names_key=b"label_names", tv="CIFAR10", classes=10),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"], meta="meta",
                     label_key=b"fine_labels", names_key=b"fine_label_names", tv="CIFAR100", classes=100),
}

# The only globals a CIFAR pickle needs: numpy arrays. Anything else (os.system, ...) is refused,
# so a tampered batch file cannot run code.
_ALLOWED_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def read_cifar_batch(path: Path, label_key: bytes = b"labels") -> tuple[np.ndarray, np.ndarray]:
    """Read one original CIFAR python batch: uint8 images (N, 3, 32, 32) and int64 labels."""
    try:
        with open(path, "rb") as handle:
            batch = _NumpyOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
        raw = np.asarray(batch[b"data"])
        labels = np.asarray(batch[label_key], dtype=np.int64)
        images = _as_uint8(raw, path).reshape(-1, 3, 32, 32)
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"CIFAR batch {str(path)!r} is corrupted or truncated ({type(exc).__name__}); "
                        "re-extract the original archive") from None
    if len(images) != len(labels):
        raise DataError(f"CIFAR batch {str(path)!r} is corrupted: {len(images)} images, {len(labels)} labels")
    return images, labels


def _as_uint8(raw: np.ndarray, path: Path) -> np.ndarray:
    """Pixel values as uint8; any value outside 0..255 (a cast would wrap it silently) is refused."""
    if raw.dtype == np.uint8:
        return raw
    if raw.dtype.kind not in "iu" or raw.size and (raw.min() < 0 or raw.max() > 255):
        low, high = (raw.min(), raw.max()) if raw.size and raw.dtype.kind in "iuf" else ("?", "?")
        raise DataError(f"CIFAR batch {str(path)!r} has pixel values of type {raw.dtype} in [{low}, {high}]; "
                        "allowed: integers 0..255 (the original archive's uint8)")
    return raw.astype(np.uint8)


def check_cifar_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise DataError(f"CIFAR batch {str(path)!r} has label {int(bad[0])} outside 0..{num_classes - 1} "
                        f"(the meta file names {num_classes} classes); re-extract the original archive")


def read_cifar_meta(path: Path, names_key: bytes) -> list[str]:
    try:
        with open(path, "rb") as handle:
            meta = _NumpyOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
        return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError):
        raise DataError(f"CIFAR meta file {str(path)!r} is corrupted or truncated; "
                        "re-extract the original archive") from None


def resolve_data_dir(data_dir: str | None) -> Path:
    return Path(os.path.expanduser(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR))


def find_cifar_folder(root: Path, spec: dict) -> Path | None:
    for candidate in (root, root / spec["folder"]):
        if all((candidate / f).is_file() for f in spec["train"] + spec["test"] + [spec["meta"]]):
            return candidate
    return None


def _online(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download_cifar(name: str, root: Path, spec: dict) -> Path | None:
    """Download with torchvision when the machine is online; None when it is not."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec["tv"])
    if not _online(cls.url):
        return None
    root.mkdir(parents=True, exist_ok=True)
    cls(root=str(root), train=True, download=True)
    return find_cifar_folder(root, spec)


@register_dataset("cifar10", "cifar100")
def _load_cifar(options: DataOptions) -> DatasetBundle:
    name = options.dataset
    spec = _CIFAR[name]
    root = resolve_data_dir(options.data_dir)
    folder = find_cifar_folder(root, spec) or _download_cifar(name, root, spec)
    if folder is None:
        raise DataError(
            f"{name}: no batches found in {str(root)!r} (nor {str(root / spec['folder'])!r}) and the machine "
            f"is offline; extract the python version of {name} there, or pass --data-dir / set {DATA_DIR_ENV}")
    names = read_cifar_meta(folder / spec["meta"], spec["names_key"])
    if len(names) != spec["classes"]:
        raise DataError(f"CIFAR meta file {str(folder / spec['meta'])!r} names {len(names)} classes; {name} has "
                        f"{spec['classes']}; re-extract the original archive")
    train = [read_cifar_batch(folder / f, spec["label_key"]) for f in spec["train"]]
    test = [read_cifar_batch(folder / f, spec["label_key"]) for f in spec["test"]]
    for file, (_, labels) in zip(spec["train"] + spec["test"], train + test):
        check_cifar_labels(folder / file, labels, len(names))
    size = options.image_size or 32

    def stack(parts):
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        return resize_uint8(images, size), np.concatenate([p[1] for p in parts])

    images, labels = stack(train)
    test_images, test_labels = stack(test)
    train_s, val_s, test_s = _array_splits(images, labels, options, test=(test_images, test_labels))
    mean, std = channel_stats(train_s.images)
    return DatasetBundle(name, train_s, val_s, test_s, names, mean, std, default_hflip=True,
                         image_size=size, meta={"folder": str(folder)})


# ----------------------------------------------------------------------------- image folders

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


class _DecodeDataset(torch.utils.data.Dataset):
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


def _decoded(batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of DataLoader batches from _DecodeDataset; the first unreadable file raises."""
    for images, labels, errors in batches:
        failed = next((e for e in errors if e), None)
        if failed:
            raise DataError(failed)
        yield images, labels


def _decode_all(paths: list[str], labels: torch.Tensor, size: int, resize: str, workers: int) -> ArraySplit:
    loader = torch.utils.data.DataLoader(_DecodeDataset(paths, labels, size, resize), batch_size=256,
                                         num_workers=workers)
    images, labs = zip(*_decoded(loader)) if len(paths) else ((), ())
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


@register_dataset("imagefolder:")
def _load_image_folder(options: DataOptions) -> DatasetBundle:
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


# ----------------------------------------------------------------------------- batches

def iterate_batches(split: ArraySplit | FolderSplit, batch_size: int, *, device: torch.device,
                    shuffle: bool, generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) on `device`; shuffled with `generator` when asked."""
    n = len(split)
    if isinstance(split, FolderSplit):
        sampler = torch.randperm(n, generator=_cpu_twin(generator)).tolist() if shuffle else range(n)
        dataset = _DecodeDataset(split.paths, split.labels, split.image_size, split.resize)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                             num_workers=split.num_workers, drop_last=drop_last,
                                             pin_memory=device.type == "cuda", persistent_workers=False)
        for images, labels in _decoded(loader):
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
