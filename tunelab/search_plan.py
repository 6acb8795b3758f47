"""What `tunelab tune` checks and prepares before anything is written: `plan_search`.

Options, --set values, the search space (with --space overrides), the experiment name and storage,
the Optuna storage, the trackers, this machine's resources or the cluster's address, the data
(loaded once, shared with every trial through the object store), and every model the search could
draw. `tune --dry-run` runs the same checks (tunelab.dryrun).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from tunelab.cluster import (check_cluster, check_local_resources, check_reachable, connect_ray,
                             starts_private_instance)
from tunelab.experiments import check_free, check_name, check_storage_writable, experiment_path, normalise_storage
from tunelab.preflight import absolute_sqlite_url, probe_lock
from tunelab.experiment_lock import lock_path
from tunelab import tracker_plugins as trackers
from tunelab.search_spaces import space_for
from tunelab.search_spaces.base import Choice, SearchSpace, settle_conditions
from tunelab.search_spaces.overrides import apply_overrides, load_space_file
from tunelab.study import check_optuna_storage
from tunelab.trainables import METHOD_CLASSES
from tunelab.trainables.config import build_config, to_dict
from tunelab.core.errors import ConfigError
from tunelab.trainables.phases import mark
from tunelab.tune_options import TuneOptions, check_options, fixed_values


def resolve_relative_urls(opts: TuneOptions) -> None:
    """Relative paths in --optuna-storage and the trackers' values (--mlflow) are made absolute (in
    `opts`, so the record holds them so): `resume` from another folder then reaches the same databases."""
    if opts.optuna_storage:
        opts.optuna_storage = absolute_sqlite_url(opts.optuna_storage)
    for name, value in trackers.resolve(opts).items():
        setattr(opts, name, value)


def check_pretrained_path(fixed: dict[str, Any]) -> None:
    """A `pretrained=PATH` every trial would load must be a file now: refused here, not by each trial
    after Ray has started."""
    pretrained = fixed.get("pretrained")
    if not isinstance(pretrained, str) or pretrained.strip() in ("auto", "imagenet", ""):
        return
    if not os.path.isfile(pretrained):
        what = "is a folder" if os.path.isdir(pretrained) else "no such file"
        raise ConfigError(f"pretrained={pretrained!r}: {what}; give a checkpoint file (make one with "
                          "`tunelab pretrain --out FILE`), or pretrained=auto")


def resolve_space(opts: TuneOptions, fixed: dict[str, Any]) -> SearchSpace:
    config_class = METHOD_CLASSES[opts.method].config_class
    space = dict(space_for(opts.method))
    if opts.space:
        space = apply_overrides(space, load_space_file(opts.space), config_class)
    for key in fixed:  # a value fixed with --set is not searched
        space.pop(key, None)
    # a conditional entry whose parent is fixed is searched in the range of the fixed value
    space = settle_conditions(space, to_dict(build_config(config_class, fixed)))
    if not space:
        raise ConfigError("the search space is empty (every entry was fixed or dropped); nothing to tune")
    return space


def load_shared_data(method: str, fixed: dict[str, Any], make_backbone: bool = True, made_first: tuple[str, ...] = ()):
    """Load the dataset once (bad paths fail here, before Ray starts) and pretrain `auto` backbones
    once (with `make_backbone` False, only check that the cache could take one: nothing written).
    A `pretrained=PATH` is read and its source checked against this data (the leak guard), unless
    it is one of `made_first`, a backbone the caller makes before the search."""
    from tunelab.trainables.data import load_dataset

    config = build_config(METHOD_CLASSES[method].config_class, fixed)
    if getattr(config, "pretrained", None) == "auto":
        from tunelab.trainables.pretrain import auto_checkpoint_path, check_cache_writable, ensure_auto_backbone

        if make_backbone:
            fixed["pretrained"] = str(ensure_auto_backbone(config, stream=sys.stderr))
        elif not auto_checkpoint_path(config).exists():
            check_cache_writable(auto_checkpoint_path(config))
    elif fixed.get("pretrained") not in made_first:
        from tunelab.trainables.pretrained import check_pretrained_file

        check_pretrained_file(config)  # a missing or leaky file: refused here, not in every trial
    return load_dataset(config.data_options())


def default_name(opts: TuneOptions) -> str:
    dataset = (opts.dataset or "digits").split(":")[0]
    return f"{opts.method}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_models(opts: TuneOptions, fixed: dict[str, Any], space: SearchSpace, data) -> None:
    """Every model (and stem) a trial could draw must run on the dataset's image size."""
    from tunelab.trainables.models import check_model_fits

    config = build_config(METHOD_CLASSES[opts.method].config_class, fixed)
    models = space["model"].options if isinstance(space.get("model"), Choice) else (config.model,)
    stems = space["cifar_stem"].options if isinstance(space.get("cifar_stem"), Choice) else (config.cifar_stem,)
    for model in models:
        for stem in stems:
            options = dataclasses.replace(config.model_options(), name=model, cifar_stem=stem)
            check_model_fits(options, data.image_size, data.num_classes)


@dataclass
class SearchPlan:
    """What `plan_search` checked and prepared; nothing of it is written yet."""

    fixed: dict[str, Any]
    space: SearchSpace
    name: str
    storage: str
    path: str
    private: bool  # tunelab starts its own Ray instance (rather than joining a cluster)
    data: Any


def plan_search(opts: TuneOptions, dry_run: bool = False, made_first: tuple[str, ...] = ()) -> SearchPlan:
    """Everything that can be refused, refused before anything is written: options, config values,
    the search space, the experiment name and storage, the Optuna storage and MLflow, the resources
    (of this machine before a private instance starts, of a cluster right after joining it), the
    data, and every model the search could draw. With `dry_run` Ray is neither started nor joined
    and no backbone is pretrained; `made_first` names checkpoint files the caller makes before the
    search (compare's source backbone), not there yet."""
    check_options(opts)
    resolve_relative_urls(opts)
    fixed = fixed_values(opts)
    build_config(METHOD_CLASSES[opts.method].config_class, fixed)  # bad --set fails before anything starts
    if fixed.get("pretrained") not in made_first:
        check_pretrained_path(fixed)
    space = resolve_space(opts, fixed)
    name = check_name(opts.name if opts.name is not None else default_name(opts))
    storage = normalise_storage(opts.storage)
    check_storage_writable(storage)
    path = experiment_path(storage, name)
    check_free(path, opts.overwrite)
    probe_lock(lock_path(path), path)  # another driver's: refused before Ray starts (taken for real later)
    check_optuna_storage(opts, name, path)
    trackers.check(opts)  # extra not installed, bad URI or project, no W&B login
    private = starts_private_instance(opts.address)
    if private:
        check_local_resources(opts)
    else:
        check_reachable(opts.address)
    data = load_shared_data(opts.method, fixed, make_backbone=not dry_run, made_first=made_first)
    mark("data_loaded")
    check_models(opts, fixed, space, data)
    if dry_run:
        return SearchPlan(fixed, space, name, storage, path, private, data)
    connect_ray(opts.address)
    mark("ray_ready")
    check_cluster(opts, storage)
    return SearchPlan(fixed, space, name, storage, path, private, data)
