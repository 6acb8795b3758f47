"""`tunelab tune`'s options and the checks that need neither data nor Ray.

The command line builds a TuneOptions from its arguments and refuses bad ones here, before the
driver (tunelab.driver) imports torch, Ray and pandas; the driver runs the same checks again for
callers that skip the command line (compare, resume).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from tunelab.trainables import config_class
from tunelab.core import metrics as M
from tunelab.trainables.catalog import dataset_names
from tunelab.trainables.config import build_config, parse_set_options
from tunelab.core.errors import ConfigError
from tunelab.duration import parse_duration
from tunelab.searcher_plugins import REGISTERED, searcher_for
from tunelab.tracker_plugins import with_tracker_options
from tunelab.options import option

DEFAULT_STORAGE = "./runs"
SEARCHES = tuple(REGISTERED)  # tunelab.searchers: one module each
SCHEDULERS = ("asha", "fifo")


@dataclass
@with_tracker_options
class TuneOptions:
    """`tunelab tune`'s options; the command line is derived from these fields (tunelab.options).
    Each registered tracker adds its own (`--mlflow`, `--wandb`: tunelab.tracker_plugins)."""

    method: str
    dataset: str | None = option(None, f"one of: {', '.join(dataset_names())} (default digits)")
    data_dir: str | None = option(None, "folder holding the dataset files (or set TUNELAB_DATA_DIR)")
    num_samples: int = option(8, "trials in the search")
    search: str = option("optuna", f"the searcher, one of: {', '.join(REGISTERED)} (the search design page says what each does)")
    scheduler: str = option("asha", "asha or fifo")
    max_epochs: int = option(4, "epochs per trial at full budget; ASHA's max_t")
    grace_period: int = option(1, "ASHA: epochs before a trial can be stopped (one above --max-epochs counts as --max-epochs)")
    reduction_factor: int = option(3, "ASHA: keep the top 1/N at each rung")
    cpus_per_trial: float = option(1.0, "CPUs reserved per trial")
    gpus_per_trial: float = option(0.0, "GPUs per trial; fractions pack trials (0.25: four per GPU)")
    max_concurrent: int = option(0, "trials at once (0: as resources allow)")
    storage: str = option(DEFAULT_STORAGE, "where experiments go: a path or a URI")
    name: str | None = option(None, "experiment name, one plain folder name (default METHOD-DATASET-TIME)")
    address: str | None = option(None, "Ray cluster to join (default $RAY_ADDRESS, else a local instance)")
    space: str | None = option(None, "YAML file narrowing, extending or dropping search-space entries")
    seed: int = option(0, "seeds the sampler and every trial")
    sets: list[str] = option(None, "fix one config value for every trial; repeatable (e.g. --set lr=0.01)",
                             flag="--set", metavar="KEY=VALUE", repeat=True)
    optuna_storage: str | None = option(None, "Optuna storage URL (e.g. sqlite:///study.db) for optuna-dashboard")
    max_failures: int = option(1, "retries of a failed trial from its checkpoint")
    startup_trials: int = option(0, "random trials before TPE (0: a quarter of --num-samples, 2..10)")
    overwrite: bool = option(False, "replace an existing experiment of the same name (only a tunelab experiment): "
                                    "deletes the files tunelab and Ray wrote there, keeps any other, replaces "
                                    "its own Optuna study, marks its MLflow runs deleted")
    checkpoint_interval_s: float = option(60.0, "a trial checkpoints at most this often and at its last epoch "
                                                "(0: every epoch)", flag="--checkpoint-interval", metavar="SECONDS")
    keep_checkpoints: int = option(2, "checkpoints each trial keeps on disk: its best N by the metric, and its "
                                      "latest (resume continues from the latest)", metavar="N")
    stop_at: float | None = option(None, "end the whole search once any trial reaches this value of the metric",
                                   metavar="VALUE")
    time_budget: str | None = option(None, "end the search cleanly after this wall time (e.g. 90m, 2h): trials "
                                           "running then checkpoint and are recorded out_of_time; resume "
                                           "continues them", metavar="DURATION")
    tensorboard: bool = option(False, "also write TensorBoard event files per trial")
    dry_run: bool = option(False, "run every check made before training (options, data, models, space, storage, "
                                  "trackers, lock), print what would run and exit 0 or 2; writes nothing, starts "
                                  "no Ray (a cluster's own resources are checked only once joined)")
    metric: str = M.VAL_ACC
    mode: str = "max"


def check_options(opts: TuneOptions) -> None:
    """Every option checked on its own (no data, no Ray): one ConfigError naming the value."""
    config_class(opts.method)  # an unknown method is refused with the valid names
    if opts.search not in SEARCHES:
        raise ConfigError(f"--search {opts.search!r} is not valid; choose from: {', '.join(SEARCHES)}")
    if opts.startup_trials and not searcher_for(opts.search).keeps_an_optuna_study:
        takers = [name for name in REGISTERED if searcher_for(name).keeps_an_optuna_study]
        raise ConfigError(f"--startup-trials {opts.startup_trials} is taken only by --search {' or '.join(takers)}, "
                          f"not {opts.search}; drop --startup-trials or use --search {takers[0]}")
    if opts.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler {opts.scheduler!r} is not valid; choose from: {', '.join(SCHEDULERS)}")
    for name, value, low in (("--num-samples", opts.num_samples, 1), ("--max-epochs", opts.max_epochs, 1),
                             ("--grace-period", opts.grace_period, 1), ("--reduction-factor", opts.reduction_factor, 2),
                             ("--max-concurrent", opts.max_concurrent, 0), ("--max-failures", opts.max_failures, 0),
                             ("--keep-checkpoints", opts.keep_checkpoints, 1)):
        if value < low:
            raise ConfigError(f"{name} {value} is out of range; allowed: >= {low}")
    for flag, value in (("--cpus-per-trial", opts.cpus_per_trial), ("--gpus-per-trial", opts.gpus_per_trial),
                        ("--checkpoint-interval", opts.checkpoint_interval_s)):
        if not math.isfinite(value):
            raise ConfigError(f"{flag} {value} is not valid; allowed: a finite number")
    if opts.optuna_storage is not None and not opts.optuna_storage.strip():
        raise ConfigError(f"--optuna-storage {opts.optuna_storage!r} is empty; give a URL such as "
                          "sqlite:///runs/study.db, or leave the option out")
    if opts.checkpoint_interval_s < 0:
        raise ConfigError(f"--checkpoint-interval {opts.checkpoint_interval_s:g} is out of range; "
                          "allowed: >= 0 (0 = every epoch)")
    if opts.time_budget is not None:
        parse_duration(opts.time_budget)
    if opts.stop_at is not None and not math.isfinite(opts.stop_at):
        raise ConfigError(f"--stop-at {opts.stop_at} is not valid; allowed: a finite value of {opts.metric}")
    if opts.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial {opts.cpus_per_trial} is out of range; allowed: > 0")
    if opts.gpus_per_trial < 0 or (opts.gpus_per_trial > 1 and not float(opts.gpus_per_trial).is_integer()):
        raise ConfigError(f"--gpus-per-trial {opts.gpus_per_trial} is not valid; allowed: 0, a fraction "
                          "in (0, 1] such as 0.25, or a whole number")


def fixed_values(opts: TuneOptions) -> dict[str, Any]:
    """Config values every trial shares: --dataset/--data-dir/--set, epochs, device and threads."""
    values: dict[str, Any] = {}
    if opts.dataset:
        values["dataset"] = opts.dataset
    if opts.data_dir:
        values["data_dir"] = os.path.abspath(os.path.expanduser(opts.data_dir))
    values["epochs"] = opts.max_epochs
    values["threads"] = max(1, int(opts.cpus_per_trial))
    values["seed"] = opts.seed
    if opts.gpus_per_trial > 0:
        values["device"] = "cuda"
        if opts.gpus_per_trial < 1:
            values["gpu_memory_fraction"] = opts.gpus_per_trial
    else:
        values["device"] = "cpu"  # never a GPU the trial did not reserve
    user = parse_set_options(opts.sets)
    if "epochs" in user:
        raise ConfigError("--set epochs is not allowed in tune; use --max-epochs (the budget ASHA schedules)")
    values.update(user)
    if values.get("device") == "cuda" and opts.gpus_per_trial <= 0:
        raise ConfigError("--set device=cuda but --gpus-per-trial is 0: a trial only uses a GPU Ray reserved for it; "
                          "pass --gpus-per-trial (e.g. 1 or 0.25), or drop device=cuda")
    if values.get("device") == "cpu":
        values.pop("gpu_memory_fraction", None)
    pretrained = values.get("pretrained")
    if isinstance(pretrained, str) and pretrained.strip() not in ("auto", "imagenet", ""):
        # trials run in Ray's own working folders (on any node): a relative path is found only here
        values["pretrained"] = os.path.abspath(os.path.expanduser(pretrained))
    return values


def check_config_values(opts: TuneOptions) -> dict[str, Any]:
    """The options, then the config values every trial shares (--set, --dataset) against the method's
    config: the refusals that need no data. Returns those values."""
    check_options(opts)
    fixed = fixed_values(opts)
    build_config(config_class(opts.method), fixed)
    return fixed
