"""Where `pretrained=auto` keeps its offline backbones, and the kind every tunelab backbone file
records: shared by `pretrain` (which writes them) and `pretrained` (which loads them)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelab.trainables.configs import TrainConfig

CACHE_ENV = "TUNELAB_CACHE_DIR"
BACKBONE_KIND = "tunelab-backbone"


def cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get(CACHE_ENV, "~/.cache/tunelab")))


def file_safe(dataset: str) -> str:
    """A dataset name as part of a file name (`imagefolder:/data/x` has a colon and slashes)."""
    return dataset.replace("/", "_").replace(":", "_")


def auto_checkpoint_path(config: TrainConfig) -> Path:
    """Where `pretrained=auto` keeps the offline backbone for this model and target split."""
    subset = (f"-c{config.classes.replace(' ', '')}" if config.classes else "") + (
        f"-n{config.train_per_class}" if config.train_per_class else "")
    key = (f"{config.model}-w{config.width}-{'cifarstem' if config.cifar_stem else 'stem'}-"
           f"{'bn' if config.batchnorm else 'nobn'}-{file_safe(config.dataset)}-"
           f"s{config.image_size}-v{config.val_fraction:g}-split{config.split_seed}{subset}.pt")
    return cache_dir() / "pretrained" / key
