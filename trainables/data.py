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

from typing import Callable

import numpy as np
import torch

from tunelab.trainables import catalog
from tunelab.trainables.configs import DataOptions
from tunelab.core.errors import DataError
from tunelab.trainables.registry import registrar
from tunelab.trainables.subsets import check_ids, check_per_class, keep_classes, parse_classes, per_class_index, take
from tunelab.trainables.cifar import load_cifar
from tunelab.trainables.image_folders import load_image_folder
from tunelab.trainables.splits import DatasetBundle, array_splits, channel_stats, resize_uint8



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
    train, val, test = array_splits(images, labels, options, test=None)
    mean, std = channel_stats(train.images)
    return DatasetBundle("digits", train, val, test, [str(d) for d in range(10)], mean, std,
                         default_hflip=False, image_size=size)




register_dataset("cifar10", "cifar100")(load_cifar)
register_dataset("imagefolder:")(load_image_folder)
