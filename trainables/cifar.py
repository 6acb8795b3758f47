"""`cifar10`, `cifar100`: the original python-pickle batches from a local folder (downloaded with
torchvision when the machine is online). A tampered batch file cannot run code: the unpickler takes
numpy arrays only."""
from __future__ import annotations

import io
import os
import pickle
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from tunelab.trainables.configs import DataOptions
from tunelab.core.errors import DataError
from tunelab.trainables.splits import DatasetBundle, array_splits, channel_stats, resize_uint8

DATA_DIR_ENV = "TUNELAB_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/tunelab/data"


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


def load_cifar(options: DataOptions) -> DatasetBundle:
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
    train_s, val_s, test_s = array_splits(images, labels, options, test=(test_images, test_labels))
    mean, std = channel_stats(train_s.images)
    return DatasetBundle(name, train_s, val_s, test_s, names, mean, std, default_hflip=True,
                         image_size=size, meta={"folder": str(folder)})


