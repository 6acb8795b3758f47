"""Pretrained backbones: torchvision ImageNet weights from the local cache, a checkpoint file, or
one produced offline by `tunelab pretrain`.

The offline source task is rotation prediction (RotNet, Gidaris et al. 2018): each image of the
TARGET'S TRAINING SPLIT is shown at 0/90/180/270 degrees and the network predicts the angle. It
uses no class labels and never sees the target's val or test images; the checkpoint records the
split it was made from, and fine-tuning refuses a checkpoint made from another split of the same
dataset (that could contain the new split's val images). `task=supervised` instead trains a
classifier on a source dataset's labels (e.g. CIFAR-100 before fine-tuning on CIFAR-10).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from trainables.data import ArraySplit, DatasetBundle, channel_stats, load_dataset, stratified_split
from trainables.engine import Method, TrainConfig, train
from trainables.errors import ConfigError, DataError, check_choice
from trainables.models import FeatureClassifier
from trainables.reporting import LocalReporter, load_checkpoint_file, save_checkpoint

CACHE_ENV = "TUNELAB_CACHE_DIR"
BACKBONE_KIND = "tunelab-backbone"
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


def source_split_identity(config: TrainConfig) -> dict:
    """What a backbone's source data depended on; compared against the fine-tuning target."""
    return {"dataset": config.dataset, "val_fraction": config.val_fraction, "split_seed": config.split_seed,
            "image_size": config.image_size}


# ----------------------------------------------------------------------------- rotation pretext

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
        "source": {"task": getattr(config, "task", "supervised"), "pretext_dataset": data.name,
                   **source_split_identity(config)},
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    save_checkpoint(out, state)


# ----------------------------------------------------------------------------- loading

def cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get(CACHE_ENV, "~/.cache/tunelab")))


def file_safe(dataset: str) -> str:
    """A dataset name as part of a file name (`imagefolder:/data/x` has a colon and slashes)."""
    return dataset.replace("/", "_").replace(":", "_")


def auto_checkpoint_path(config: TrainConfig) -> Path:
    """Where `pretrained=auto` keeps the offline backbone for this model and target split."""
    key = (f"{config.model}-w{config.width}-{'cifarstem' if config.cifar_stem else 'stem'}-"
           f"{'bn' if config.batchnorm else 'nobn'}-{file_safe(config.dataset)}-"
           f"s{config.image_size}-v{config.val_fraction:g}-split{config.split_seed}.pt")
    return cache_dir() / "pretrained" / key


def ensure_auto_backbone(config: TrainConfig, stream=None) -> Path:
    """The cached offline backbone for `config`, pretrained now (once) if it is not there yet."""
    path = auto_checkpoint_path(config)
    if not path.exists():
        keys = {f: getattr(config, f) for f in ("dataset", "data_dir", "image_size", "val_fraction", "split_seed",
                                                "model", "width", "cifar_stem", "batchnorm", "device")}
        if stream is not None:
            print(f"pretrained=auto: pretraining {config.model} on rotation prediction -> {path}", file=stream)
        pretrain(PretrainConfig(**keys), path, quiet=True)
    return path


def imagenet_weights_file(model_name: str) -> tuple[Path, str]:
    """(expected local path, download url) of torchvision's default ImageNet weights."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(model_name).DEFAULT
    except (ValueError, KeyError):
        raise ConfigError(f"pretrained=imagenet: torchvision has no ImageNet weights for model={model_name!r}") \
            from None
    url = weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def load_imagenet_backbone(model: FeatureClassifier, config: TrainConfig) -> dict:
    if config.model.startswith("resnet") and (config.width not in (0, 64) or config.cifar_stem):
        raise ConfigError(f"pretrained=imagenet needs the ImageNet layout: set width=64 and cifar_stem=false "
                          f"(got width={config.width}, cifar_stem={config.cifar_stem})")
    path, url = imagenet_weights_file(config.model)
    if not path.exists():
        raise ConfigError(f"pretrained=imagenet: weights file {path.name} is missing; download {url} "
                          f"and put it in {path.parent}")
    state = load_checkpoint_file(path)
    own = model.backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise ConfigError(f"pretrained=imagenet: {path.name} does not fit model={config.model!r} "
                          f"({len(missing)} tensors missing, e.g. {missing[0]})")
    model.backbone.load_state_dict(usable)
    return {"source": "imagenet", "file": str(path)}


def load_checkpoint_backbone(model: FeatureClassifier, config: TrainConfig, path: Path) -> dict:
    """Load a `tunelab pretrain` file (or a `tunelab train --out` checkpoint) into model.backbone."""
    if not path.exists():
        raise ConfigError(f"pretrained={str(path)!r}: no such file; make one with `tunelab pretrain --out FILE`")
    state = load_checkpoint_file(path)
    if state.get("kind") == BACKBONE_KIND:
        backbone, name, source = state["backbone"], state.get("model_name"), state.get("source", {})
    elif "model" in state and isinstance(state["model"], dict):
        backbone = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
        name, source = state.get("model_name"), {}
    else:
        raise ConfigError(f"pretrained={str(path)!r} is not a tunelab backbone or training checkpoint")
    if name not in (None, config.model):
        raise ConfigError(f"pretrained={str(path)!r} is a {name} checkpoint, not model={config.model!r}")
    _refuse_leaky_source(source, config, path)
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as exc:
        raise ConfigError(f"pretrained={str(path)!r} does not fit model={config.model!r} with width={config.width}: "
                          f"{str(exc).splitlines()[1 if len(str(exc).splitlines()) > 1 else 0].strip()}") from None
    return {"source": "checkpoint", "file": str(path), **source}


def _refuse_leaky_source(source: dict, config: TrainConfig, path: Path) -> None:
    if source.get("dataset") != config.dataset:
        return
    own = source_split_identity(config)
    for key in ("val_fraction", "split_seed"):
        if source.get(key) != own[key]:
            raise ConfigError(f"pretrained={str(path)!r} was made from {config.dataset} with {key}={source.get(key)}; "
                              f"with {key}={own[key]} its source images may include this run's val images")


def load_pretrained(model: FeatureClassifier, config: TrainConfig, stream=None) -> dict:
    """Fill model.backbone from config.pretrained: 'imagenet', 'auto' or a file path."""
    spec = config.pretrained
    if spec == "imagenet":
        return load_imagenet_backbone(model, config)
    if spec == "auto":
        return load_checkpoint_backbone(model, config, ensure_auto_backbone(config, stream))
    return load_checkpoint_backbone(model, config, Path(os.path.expanduser(spec)))


def replace_classifier(model: FeatureClassifier, num_classes: int) -> None:
    """A new fc for the target classes, initialised N(0, 0.01) with zero bias as the official code does."""
    model.fc = nn.Linear(model.feature_dim, num_classes).to(next(model.parameters()).device)
    nn.init.normal_(model.fc.weight, 0.0, 0.01)
    nn.init.zeros_(model.fc.bias)

