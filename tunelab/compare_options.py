"""`tunelab compare`'s options and the checks that need neither data nor Ray.

The command line builds CompareOptions from its arguments and refuses bad ones here, before
tunelab.compare imports torch, Ray and pandas.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tunelab.trainables import method_names
from tunelab.core.errors import ConfigError
from tunelab.trainables.subsets import parse_classes, shared_classes
from tunelab.options import UNSET, option, shared
from tunelab.replicates import check_replicates, parse_replicates
from tunelab.tracker_plugins import with_tracker_options
from tunelab.tune_options import TuneOptions

DEFAULT_METHODS = tuple(method_names())  # every method, in registration order


@dataclass
@with_tracker_options  # tune's tracker options, passed to every search
class CompareOptions:
    """`tunelab compare`'s options; those it shares with `tune` are declared there (tunelab.options)."""

    dataset: str = shared(TuneOptions, "dataset", default="digits")
    data_dir: str | None = shared(TuneOptions, "data_dir")
    methods: tuple[str, ...] = option(DEFAULT_METHODS, "comma-separated methods (default: every registered one)")
    out: str | None = option(None, "folder for the compare's state, confirmations and report, and for the searches' "
                                   "experiments unless --storage is given (default compare/DATASET-TIME); the same "
                                   "compare run again with it continues an interrupted one")
    # the root of every method's experiment (STORAGE/METHOD, or STORAGE/replicate-R/METHOD): OUT/runs
    # when not given; compare's own state, confirmations and report stay in --out
    storage: str | None = shared(TuneOptions, "storage", default=None)
    preset: str | None = option(None, "named settings for every option not given: transfer-digits (the defaults), "
                                      "transfer-cifar (CIFAR-10 classes 0-4 -> 5-9, a GPU budget)")
    classes: str = option("5-9", "target classes every method trains and is tested on ('' = all)")
    train_per_class: int = option(10, "labelled training images per target class (0 = all)")
    source_classes: str = option("0-4", "classes of the same dataset the fine-tuning methods' backbone is "
                                        "pretrained on, supervised ('' = rotation pretraining on the target)")
    source_epochs: int = option(10, "epochs of the supervised source pretraining")
    # The defaults are the main job's (`make run`): the largest replicate count that keeps it under 6
    # minutes on a 2-core CPU, measured (benchmarks/main-job-budget.md): 2 replicates
    # of 10 trials x 20 epochs and 2 confirmation seeds. One replicate of 12 x 30 and 25 seeds took
    # 553 s; 3 replicates of 8 x 20 and 3 seeds 466 s, each search paying ~7 s of worker start-up.
    num_samples: int = shared(TuneOptions, "num_samples", default=10)
    max_epochs: int = shared(TuneOptions, "max_epochs", default=20)
    # A low-data target has one or two steps per epoch (50 images, batch 32-128): ASHA's first rung
    # must not judge a trial on a handful of steps. Measured on the default task, 12 classifier
    # trials: rungs from 5 epochs left 4 at chance (all pairs that train given 30 epochs), from 10
    # epochs 2 (benchmarks/transfer-shots.md).
    grace_period: int = shared(TuneOptions, "grace_period", default=10)
    seeds: int = option(2, "confirmation seeds per method (per replicate)")
    replicates: int = option(2, "run the whole pipeline R times, each replicate with its own data draw "
                                "(split_seed), search seed and confirmation seeds, the methods paired within it; "
                                "the headline interval is then across replicates (paired t; R = 1: over the "
                                "seeds of one draw and one search only)",
                             metavar="R", parse=parse_replicates)
    seed: int = shared(TuneOptions, "seed")
    cpus_per_trial: float = shared(TuneOptions, "cpus_per_trial")
    gpus_per_trial: float = shared(TuneOptions, "gpus_per_trial")
    address: str | None = shared(TuneOptions, "address")
    # not tune's option: one budget for every search together, split between them
    total_time_budget: str | None = option(None, "wall time for all the searches, split equally between the "
                                                 "methods (e.g. 2h: 24m each of 5); confirmation runs are not "
                                                 "counted", flag="--time-budget", metavar="DURATION")
    baseline: str | None = option(None, "method the others are compared with (default finetune)")
    parallel: bool = option(False, "run the methods' searches at the same time, sharing the cluster (each its own "
                                   "driver process, Optuna study, experiment folder and budget); with "
                                   "--time-budget each search gets the whole budget and an equal share of the "
                                   "trial slots")
    dry_run: bool = shared(TuneOptions, "dry_run")


def parse_methods(text: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if text is None or text is UNSET:
        return DEFAULT_METHODS  # an empty --methods '' (an unset shell variable) is refused below, not read as all
    if isinstance(text, tuple):
        return text
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    for method in methods:
        if method not in DEFAULT_METHODS:
            raise ConfigError(f"--methods: {method!r} is not known; choose from: {', '.join(DEFAULT_METHODS)}")
    if not methods:
        raise ConfigError(f"--methods {text!r} names no method; choose from: {', '.join(DEFAULT_METHODS)}")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise ConfigError(f"--methods {text!r} names {repeated[0]!r} twice; each method is searched once")
    return methods


def check_baseline(baseline: str | None, methods: tuple[str, ...]) -> None:
    if baseline is not None and baseline not in methods:
        raise ConfigError(f"--baseline {baseline!r} is not one of the compared methods; choose from: "
                          f"{', '.join(methods)}")


# Settings a preset gives the options the user leaves out. transfer-digits is the defaults above:
# 10 images per class was chosen with benchmarks/transfer_shots.py (benchmarks/transfer-shots.md).
PRESETS: dict[str, dict[str, Any]] = {
    "transfer-digits": {},
    # CIFAR-10 source airplane..deer (0-4), target dog..truck (5-9), 100 labelled images per target
    # class, a budget for a GPU (add --gpus-per-trial): 32 trials x 30 epochs, 10 seeds, in each of
    # the default 2 replicates.
    "transfer-cifar": {"dataset": "cifar10", "classes": "5-9", "source_classes": "0-4", "train_per_class": 100,
                       "source_epochs": 30, "num_samples": 32, "max_epochs": 30, "seeds": 10},
}


def with_preset(opts: CompareOptions, given: set[str]) -> CompareOptions:
    """`opts` with its preset's values for every option the user did not give."""
    if opts.preset is None:
        return opts
    if opts.preset not in PRESETS:
        raise ConfigError(f"--preset {opts.preset!r} is not known; choose from: {', '.join(PRESETS)}")
    return dataclasses.replace(opts, **{k: v for k, v in PRESETS[opts.preset].items() if k not in given})


def check_transfer(opts: CompareOptions) -> None:
    """The target and source classes are valid subsets and disjoint (the source must not have seen
    the target's labels); the per-class count is not negative. Ids are checked when the data loads."""
    if opts.train_per_class < 0:
        raise ConfigError(f"--train-per-class {opts.train_per_class} is out of range; allowed: >= 0 (0 = all)")
    if opts.source_epochs < 1:
        raise ConfigError(f"--source-epochs {opts.source_epochs} is out of range; allowed: >= 1")
    target, source = parse_classes(opts.classes), parse_classes(opts.source_classes)
    if opts.source_classes and (shared := shared_classes(source, target)) is not None:
        raise ConfigError(f"--source-classes {opts.source_classes!r} and --classes {opts.classes!r} share classes "
                          f"{shared}; the source must not include the target's classes (e.g. 0-4 and 5-9)")


def check_options(opts: CompareOptions) -> None:
    """Every option checked on its own (no data, no Ray): one ConfigError naming the value."""
    from tunelab.duration import parse_duration

    if opts.seeds < 1:
        raise ConfigError(f"--seeds {opts.seeds} is out of range; allowed: >= 1")
    check_replicates(opts.replicates)
    check_baseline(opts.baseline, opts.methods)
    check_transfer(opts)
    if opts.total_time_budget is not None:
        parse_duration(opts.total_time_budget)
    if opts.storage is not None:
        from tunelab.experiments import normalise_storage

        normalise_storage(opts.storage)
