"""Loading pretrained backbones: torchvision ImageNet weights from the local cache, a checkpoint
file, or one produced offline by `tunelab pretrain` (`tunelab.trainables.pretrain`).

A backbone file records the split and classes it was made from. Fine-tuning on the same dataset
refuses one made from another split (its source images could contain the new split's val or test
images) and a supervised one whose classes overlap the target's (it was trained on labelled images
of the target's classes, beyond the few a low-data target keeps: that is no transfer). Disjoint
classes are the intended transfer task: pretrain on classes=0-4, fine-tune on 5-9, with any
split_seed (no image of the target's classes is among the source's, in any split: compare
--replicates fine-tunes one such backbone on every replicate's own split).
Datasets are compared by resolved identity (`tunelab.trainables.identity`: `imagefolder:x`, `./x`, `x/` and
a symlink to x are one folder). Every checkpoint tunelab writes carries that record (`source`); a
file without one is refused unless `allow_unknown_source=true`, which the run then records.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tunelab.trainables.backbone_cache import BACKBONE_KIND
from tunelab.trainables.engine import TrainConfig
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import load_checkpoint_file
from tunelab.trainables.identity import canonical_dataset, data_identity
from tunelab.trainables.models import FeatureClassifier
from tunelab.trainables.subsets import parse_classes, shared_classes



# ----------------------------------------------------------------------------- loading

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
    backbone, info = read_backbone(config, path)
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as exc:
        raise ConfigError(f"pretrained={str(path)!r} does not fit model={config.model!r} with width={config.width}: "
                          f"{str(exc).splitlines()[1 if len(str(exc).splitlines()) > 1 else 0].strip()}") from None
    if info.get("unknown_source_allowed"):
        print(f"tunelab: warning: pretrained={str(path)!r} records no source data; used unchecked because "
              "allow_unknown_source=true (recorded in this run's checkpoints)", file=sys.stderr)
    return info


def read_backbone(config: TrainConfig, path: Path) -> tuple[dict, dict]:
    """(backbone tensors, provenance) of a checkpoint file, refused when it is of another model or its
    source data could hold this run's images (`check_source`)."""
    if not path.exists():
        raise ConfigError(f"pretrained={str(path)!r}: no such file; make one with `tunelab pretrain --out FILE`")
    state = load_checkpoint_file(path)
    if state.get("kind") == BACKBONE_KIND:
        backbone, name = state["backbone"], state.get("model_name")
    elif "model" in state and isinstance(state["model"], dict):
        backbone = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
        name = state.get("model_name")
    else:
        raise ConfigError(f"pretrained={str(path)!r} is not a tunelab backbone or training checkpoint")
    if name not in (None, config.model):
        raise ConfigError(f"pretrained={str(path)!r} is a {name} checkpoint, not model={config.model!r}")
    source = state.get("source") if isinstance(state.get("source"), dict) else {}
    unknown = check_source(source, config, path)
    info = {"source": "checkpoint", "file": str(path), "data": source or None}
    if unknown:
        info["unknown_source_allowed"] = True
    return backbone, info


def check_pretrained_file(config: TrainConfig) -> None:
    """Refuse a `pretrained=PATH` that is missing, of another model or leaky, before any work starts
    (the driver calls this before Ray; trials would otherwise each fail on it)."""
    spec = getattr(config, "pretrained", None)
    if spec and spec not in ("auto", "imagenet"):
        read_backbone(config, Path(os.path.expanduser(spec)))


def has_source_record(source: Any) -> bool:
    return isinstance(source, dict) and bool(source.get("dataset"))


def check_source(source: dict, config: TrainConfig, path: Path) -> bool:
    """Refuse a checkpoint whose source data could include this run's images, comparing resolved
    identities (`tunelab.trainables.identity`) along the whole chain of checkpoints it was fine-tuned from.
    A record missing anywhere on the chain is refused unless `allow_unknown_source=true`; returns
    whether such an unknown source was let through."""
    unknown = False
    for record in source_chain(source):
        if has_source_record(record):
            _refuse_leaky_source(record, config, path)
        elif getattr(config, "allow_unknown_source", False):
            unknown = True
        else:
            raise ConfigError(
                f"pretrained={str(path)!r} records no source data (made by an older tunelab or by hand), so it "
                f"cannot be checked against the target {target_text(config)}; make it again with `tunelab "
                "pretrain` or `tunelab train --out`, or set allow_unknown_source=true if you know its source")
    return unknown


def source_chain(source: dict, limit: int = 100) -> list[dict]:
    """A checkpoint's own source record, then those of the checkpoints it was fine-tuned from, nearest
    first ({} where one was unknown)."""
    chain = [source]
    upstream = source.get("pretrained")
    while isinstance(upstream, dict) and upstream.get("source") == "checkpoint" and len(chain) < limit:
        record = upstream.get("data") if isinstance(upstream.get("data"), dict) else {}
        chain.append(record)
        upstream = record.get("pretrained")
    return chain


def target_text(config: TrainConfig) -> str:
    """The fine-tuning target's data, as the leak guard's messages name it."""
    return (f"({canonical_dataset(config.dataset)}, split_seed={config.split_seed}, "
            f"val_fraction={config.val_fraction:g}, classes {config.classes or 'all'})")


def _refuse_leaky_source(source: dict, config: TrainConfig, path: Path) -> None:
    if canonical_dataset(str(source.get("dataset"))) != canonical_dataset(config.dataset):
        return  # other images altogether: the intended transfer
    own = data_identity(config)
    # rotation pretraining uses no labels, but the target's own training split: that split must match
    supervised = source.get("task", "supervised") != "rotation"
    shared = shared_classes(parse_classes(str(source.get("classes") or "")), parse_classes(config.classes)) \
        if supervised else None
    if supervised and shared is None:
        # labelled images of other classes only: none of this run's images in any split, whatever the
        # split seeds (the test split never moves with them), so one backbone serves every data draw
        return
    for key in ("val_fraction", "split_seed"):
        if source.get(key) != own[key]:
            raise ConfigError(f"pretrained={str(path)!r} was made from {own['dataset']} with {key}={source.get(key)}; "
                              f"with {key}={own[key]} its source images may include this run's val or test images "
                              f"(target {target_text(config)})")
    if supervised:
        raise ConfigError(
            f"pretrained={str(path)!r} was trained on the labels of {own['dataset']} classes "
            f"{source.get('classes') or 'all'}, which include this run's classes {shared} (target "
            f"{target_text(config)}); fine-tune on other classes (e.g. pretrain with classes=0-4, fine-tune "
            "with classes=5-9)")


def load_pretrained(model: FeatureClassifier, config: TrainConfig, stream=None) -> dict:
    """Fill model.backbone from config.pretrained: 'imagenet', 'auto' or a file path."""
    spec = config.pretrained
    if spec == "imagenet":
        return load_imagenet_backbone(model, config)
    if spec == "auto":
        from tunelab.trainables.pretrain import ensure_auto_backbone  # made on first use; pretrain imports this module

        return load_checkpoint_backbone(model, config, ensure_auto_backbone(config, stream))
    return load_checkpoint_backbone(model, config, Path(os.path.expanduser(spec)))


def replace_classifier(model: FeatureClassifier, num_classes: int) -> None:
    """A new fc for the target classes, initialised N(0, 0.01) with zero bias as the official code does."""
    model.fc = nn.Linear(model.feature_dim, num_classes).to(next(model.parameters()).device)
    nn.init.normal_(model.fc.weight, 0.0, 0.01)
    nn.init.zeros_(model.fc.bias)

