"""`tunelab pretrain`: produce a backbone offline, on a source task, for the fine-tuning methods.

The source task is rotation prediction (RotNet, Gidaris et al. 2018): each image of the TARGET'S
TRAINING SPLIT is shown at 0/90/180/270 degrees and the network predicts the angle. It uses no
class labels and never sees the target's val or test images; the checkpoint records the split it
was made from (see `tunelab.trainables.pretrained`, which loads backbones and refuses leaky ones).
`task=supervised` instead trains a classifier on a source dataset's labels: another dataset, or
other classes of the same one (`classes=0-4` as the source of a `classes=5-9` target).
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.trainables.data import load_dataset

from tunelab.trainables.splits import ArraySplit, DatasetBundle, channel_stats, stratified_split
from tunelab.trainables.engine import Method, TrainConfig, train
from tunelab.core.errors import ConfigError, DataError, check_choice
from tunelab.trainables.fileio import check_writable_folder, save_checkpoint
from tunelab.trainables.models import FeatureClassifier
from tunelab.trainables.identity import data_identity
from tunelab.trainables.backbone_cache import BACKBONE_KIND, CACHE_ENV, auto_checkpoint_path, cache_dir
from tunelab.trainables.reporting import LocalReporter

TASKS = ("rotation", "supervised")


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Source-task training of a backbone. Same architecture defaults as the fine-tuning methods."""

    model: str = "resnet18"
    width: int = 16
    task: str = "rotation"
    epochs: int = 8
    hflip: bool | None = False  # a flipped image would blur what a 90/270-degree turn looks like

    def validate(self) -> None:
        super().validate()
        check_choice("task", self.task, TASKS)


def rotation_bundle(target: DatasetBundle, seed: int) -> DatasetBundle:
    """Rotation-prediction data from the target's training split only (4 classes: 0/90/180/270)."""
    if not isinstance(target.train, ArraySplit):
        raise DataError("rotation pretraining needs a dataset that fits in memory; "
                        "use task=supervised on a source dataset instead")
    images = target.train.images
    keep, held = stratified_split(target.train.labels.numpy(), 0.1, seed)

    def rotated(index: np.ndarray) -> ArraySplit:
        part = images[torch.as_tensor(index)]
        stacked = torch.cat([torch.rot90(part, k, dims=(2, 3)) for k in range(4)])
        labels = torch.arange(4).repeat_interleave(len(index))
        return ArraySplit(stacked.contiguous(), labels)

    train_split, val_split = rotated(keep), rotated(held)
    mean, std = channel_stats(train_split.images)
    return DatasetBundle(f"{target.name}-rotation", train_split, val_split, val_split,
                         ["0", "90", "180", "270"], mean, std, default_hflip=False,
                         image_size=target.image_size)


def pretrain(config: PretrainConfig, out: Path, stream=None, quiet: bool = False) -> dict:
    """Train a backbone on the source task and save it to `out`; returns the final metrics."""
    target = load_dataset(config.data_options())
    data = rotation_bundle(target, config.seed) if config.task == "rotation" else target
    reporter = LocalReporter(None, asdict(config), total_epochs=config.epochs, stream=stream, quiet=quiet)
    method = _KeepModel()
    metrics = train(method, config, reporter, data=data)
    save_backbone(out, method.model, config, data, metrics)
    return metrics


class _KeepModel(Method):
    """Plain classification that keeps a handle on the trained model."""

    def build_model(self, config, data):
        self.model = super().build_model(config, data)
        return self.model


def save_backbone(out: Path, model: FeatureClassifier, config: TrainConfig, data: DatasetBundle,
                  metrics: dict) -> None:
    state = {
        "kind": BACKBONE_KIND,
        "model_name": config.model,
        "model_options": asdict(config.model_options()),
        "backbone": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        "source": {**data_identity(config, getattr(config, "task", "supervised")), "pretext_dataset": data.name},
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    save_checkpoint(out, state)


def ensure_auto_backbone(config: TrainConfig, stream=None) -> Path:
    """The cached offline backbone for `config`, pretrained now (once) if it is not there yet."""
    path = auto_checkpoint_path(config)
    if not path.exists():
        check_cache_writable(path)  # before minutes of pretraining, not after
        keys = {f: getattr(config, f) for f in ("dataset", "data_dir", "image_size", "val_fraction", "split_seed",
                                                "classes", "train_per_class", "model", "width", "cifar_stem",
                                                "batchnorm", "device")}
        if stream is not None:
            print(f"pretrained=auto: pretraining {config.model} on rotation prediction -> {path}", file=stream)
        with preserved_rng():  # the caller's run must not depend on whether the cache existed
            pretrain(PretrainConfig(**keys), path, quiet=True)
    return path


def check_cache_writable(path: Path) -> None:
    """The cache folder `path` goes into can be written (or made); refused naming TUNELAB_CACHE_DIR."""
    where = os.environ.get(CACHE_ENV)
    flag, text = (CACHE_ENV, where) if where is not None else ("the cache folder", str(cache_dir()))
    if where is not None and not where.strip():
        raise ConfigError(f"{CACHE_ENV}='' is empty; unset it (default ~/.cache/tunelab) or give a folder")
    try:
        check_writable_folder(path.parent, flag, text)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; pretrained=auto keeps its backbone there (set {CACHE_ENV} to a writable "
                          "folder)") from None


@contextlib.contextmanager
def preserved_rng():
    """Python's, numpy's and torch's (CPU and CUDA) random states as they were on entry, on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
