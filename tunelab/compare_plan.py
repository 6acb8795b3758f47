"""What each method's search in a compare is: its tune options and --set values (shared by the
compare that runs the searches and by its --dry-run, which plans them)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from tunelab import replicates as rep
from tunelab.compare_options import CompareOptions
from tunelab.trainables import config_class
from tunelab.tune_options import TuneOptions
from tunelab import tracker_plugins as trackers


def method_options(opts: CompareOptions, method: str, out: Path, backbone: Path | None,
                   time_budget: float | None, max_concurrent: int = 0, replicate: int = 0) -> TuneOptions:
    """One method's search: the same trials, epochs, scheduler, seed and data draw as every other
    method's of its replicate."""
    return TuneOptions(method=method, dataset=opts.dataset, data_dir=opts.data_dir, num_samples=opts.num_samples,
                       max_epochs=opts.max_epochs, seed=rep.search_seed(opts, replicate),
                       grace_period=opts.grace_period, cpus_per_trial=opts.cpus_per_trial,
                       gpus_per_trial=opts.gpus_per_trial,
                       max_concurrent=max_concurrent, **trackers.given(opts),
                       sets=method_sets(opts, method, backbone) + rep.data_sets(opts, replicate),
                       time_budget=None if time_budget is None else repr(time_budget),
                       # OUT/runs as a URI: valid whether Ray runs here alone or joined a local cluster
                       storage=rep.storage(out, opts, replicate), name=method)


def search_location(opts: CompareOptions, out: Path, method: str, replicate: int) -> str:
    """The experiment of one method's search, as compare reads it (a URI's credentials included:
    a search's summary and compare's state keep it redacted)."""
    from tunelab.experiments import experiment_path, normalise_storage

    return experiment_path(normalise_storage(rep.storage(out, opts, replicate)), method)


def fine_tunes(method: str) -> bool:
    return any(f.name == "pretrained" for f in dataclasses.fields(config_class(method)))


def method_sets(opts: CompareOptions, method: str, backbone: Path | None) -> list[str]:
    """The --set values of one method's search: the target task, and the source backbone for the
    methods that fine-tune one."""
    sets = [f"train_per_class={opts.train_per_class}"] + ([f"classes={opts.classes}"] if opts.classes else [])
    if backbone is not None and fine_tunes(method):
        sets.append(f"pretrained={backbone}")
    return sets
