"""What a run's data is, after resolution: the record every checkpoint tunelab writes carries, and
the one the leak guard (`tunelab.trainables.pretrained`) compares against a fine-tuning target.

A dataset is compared by what it is, not by how it was spelled: `imagefolder:x`, `imagefolder:./x`,
`imagefolder:x/` and a symlink to x are one folder, so they are one dataset. A named dataset
(cifar10, cifar100) is the same images wherever its files lie, so its name is its identity; its
resolved data folder is recorded beside it for the reader. The bundled digits have no folder.
"""
from __future__ import annotations

import os

from tunelab.trainables.configs import DataKeys

IMAGEFOLDER = "imagefolder:"
BUNDLED_DATASETS = ("digits",)  # shipped inside scikit-learn: no data folder to resolve


def resolved_folder(location: str) -> str:
    """The real absolute path of a folder however it is written (~, ./, trailing /, symlinks)."""
    return os.path.realpath(os.path.expanduser(location))


def canonical_dataset(dataset: str) -> str:
    """`imagefolder:` followed by the real path of its folder; any other dataset name as it is."""
    if dataset.startswith(IMAGEFOLDER) and dataset[len(IMAGEFOLDER):].strip():
        return IMAGEFOLDER + resolved_folder(dataset[len(IMAGEFOLDER):])
    return dataset


def data_folder(config: DataKeys) -> str | None:
    """Where the run's images were read from, resolved; None for the bundled datasets."""
    if config.dataset.startswith(IMAGEFOLDER):
        return canonical_dataset(config.dataset)[len(IMAGEFOLDER):]
    if config.dataset in BUNDLED_DATASETS:
        return None
    from tunelab.trainables.cifar import resolve_data_dir  # torch: only where a named dataset's folder is resolved

    return resolved_folder(str(resolve_data_dir(config.data_dir)))


def data_identity(config: DataKeys, task: str = "supervised") -> dict:
    """The source record of a checkpoint trained with `config`: its data, split and task.

    `task` says what the training used: `supervised` (the labels of `classes`), `rotation` (no labels).
    """
    return {"dataset": canonical_dataset(config.dataset), "data_folder": data_folder(config),
            "split_seed": config.split_seed, "val_fraction": config.val_fraction, "classes": config.classes,
            "task": task, "image_size": config.image_size, "train_per_class": config.train_per_class}
