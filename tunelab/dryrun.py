"""`tune --dry-run` and `compare --dry-run`: every check made before training, then what would run.

The checks are the real ones (`plan_search`: options, --set values, the search space, name and
storage, the Optuna storage, the trackers, this machine's resources or the cluster's address, the
data, every model the search could draw), plus the experiment lock, taken and released without
creating its file. Nothing is written and Ray is not started: a cluster's own resources (GPUs,
the largest node, whether a local storage is shared) are checked only once a real run joins it,
and a `pretrained=auto` backbone not yet in the cache is not pretrained (its folder is checked).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from tunelab.core.redaction import redact
from tunelab.search_spaces.base import Conditional
from tunelab.search_plan import plan_search
from tunelab.searcher_plugins import searcher_for
from tunelab.tracker_plugins import REGISTERED
from tunelab.tune_options import TuneOptions
from tunelab.experiment_lock import lock_path
from tunelab.preflight import probe_lock

SKIPPED = ("Ray is not started or joined: a cluster's GPUs, largest node and shared storage are checked when "
           "a real run joins it")


def plan_tune(opts: TuneOptions, made_first: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check one search as `tune` would, without writing or starting anything; its plan as plain data."""
    plan = plan_search(opts, dry_run=True, made_first=made_first)
    lock = probe_lock(lock_path(plan.path), plan.path)
    data = plan.data
    return {
        "method": opts.method, "experiment": redact(plan.path), "dataset": data.name,
        "images": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "classes": data.num_classes, "image_size": data.image_size,
        "trials": opts.num_samples, "max_epochs": opts.max_epochs,
        "search": searcher_for(opts.search).describe(opts),
        "scheduler": opts.scheduler, "seed": opts.seed,
        "space": {name: _shown(entry) for name, entry in plan.space.items()},
        "fixed": {k: v for k, v in plan.fixed.items()},
        "resources": {"cpus_per_trial": opts.cpus_per_trial, "gpus_per_trial": opts.gpus_per_trial,
                      "max_concurrent": opts.max_concurrent or "as resources allow",
                      "ray": "a private instance on this machine" if plan.private else joined_cluster(opts.address)},
        "optuna_storage": opts.optuna_storage, **{name: getattr(opts, name) for name in REGISTERED},
        "overwrite": opts.overwrite, "lock": lock, "skipped": SKIPPED,
    }


def joined_cluster(address: str | None) -> str:
    """Which Ray instance a run would join, and why: --address, $RAY_ADDRESS, or one already running here."""
    if address:
        return f"the cluster at {address} (--address)"
    if os.environ.get("RAY_ADDRESS"):
        return f"the cluster at {os.environ['RAY_ADDRESS']} ($RAY_ADDRESS)"
    from tunelab.cluster import recorded_cluster

    return (f"the Ray instance already running on this machine ({recorded_cluster() or 'address recorded by Ray'}); "
            "--address local starts a private one instead")


def _shown(entry) -> str:
    if isinstance(entry, Conditional):
        return f"when {entry.parent}: " + "; ".join(f"{option}: {'not sampled' if case is None else _shown(case)}"
                                                    for option, case in entry.cases)
    if hasattr(entry, "options"):
        return "one of " + ", ".join(map(str, entry.options))
    return f"{entry.low:g}..{entry.high:g}{' (log)' if getattr(entry, 'log', False) else ''}"


def print_tune_plan(plan: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    print("dry run: every check passed; nothing was written. `tunelab tune` would run:", file=out)
    print(f"  experiment  {plan['experiment']}{' (replacing the experiment there)' if plan['overwrite'] else ''}",
          file=out)
    print(f"  {plan['method']} on {plan['dataset']}: {plan['classes']} classes, {plan['image_size']}x"
          f"{plan['image_size']}, images train {plan['images']['train']} / val {plan['images']['val']} / "
          f"test {plan['images']['test']}", file=out)
    print(f"  {plan['trials']} trials x up to {plan['max_epochs']} epochs; search {plan['search']}, scheduler "
          f"{plan['scheduler']}, seed {plan['seed']}", file=out)
    for name, shown in plan["space"].items():
        print(f"  space  {name}: {shown}", file=out)
    print("  fixed  " + ", ".join(f"{k}={v}" for k, v in plan["fixed"].items()), file=out)
    r = plan["resources"]
    print(f"  resources  {r['cpus_per_trial']:g} CPU and {r['gpus_per_trial']:g} GPU per trial, "
          f"{r['max_concurrent']} at once, on {r['ray']}", file=out)
    for key in ("optuna_storage", *REGISTERED):
        if plan[key]:
            print(f"  {key.replace('_', ' ')}  {redact(plan[key])}", file=out)
    print(f"  {plan['lock']}", file=out)
    print(f"  not checked: {plan['skipped']}", file=out)


def dry_run_compare(opts, out: Path, share: float | None, backbone: Path | None) -> dict[str, Any]:
    """Every method's search checked as `tune --dry-run` checks it; the source backbone (made first
    by a real run) is named, not made."""
    from tunelab.compare_plan import method_options

    from tunelab.compare_state import how_to_continue
    from tunelab.experiments import experiment_path, normalise_storage
    from tunelab.replicates import search_key

    searches, continued = {}, {}
    # every replicate's searches: each has its own data draw and experiment folder to check
    for replicate, method in ((r, m) for r in range(opts.replicates) for m in opts.methods):
        key = search_key(opts, method, replicate)  # the method itself with one replicate
        search = method_options(opts, method, out, backbone, share, replicate=replicate)
        path = experiment_path(normalise_storage(search.storage), search.name)
        how = how_to_continue(path)
        if how == "resume":  # an earlier run of this compare made it: `resume` checks it when its turn comes
            continued[key] = path
            continue
        searches[key] = plan_tune(dataclasses.replace(search, dry_run=True, overwrite=how == "restart"),
                                  made_first=(str(backbone),) if backbone is not None else ())
    return {"out": str(out), "methods": list(opts.methods), "seeds": opts.seeds, "replicates": opts.replicates,
            "source_backbone": str(backbone) if backbone is not None else None,
            "parallel": opts.parallel, "searches": searches, "continued": continued, "skipped": SKIPPED}


def print_compare_plan(plan: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    print(f"dry run: every check passed; nothing was written. `tunelab compare` would write {plan['out']}:", file=out)
    if plan["source_backbone"]:
        print(f"  first: pretrain the source backbone -> {plan['source_backbone']}", file=out)
    mode = "at the same time" if plan["parallel"] else "one after another"
    print(f"  then: search {', '.join(plan['methods'])} {mode}; confirm each best config with {plan['seeds']} "
          "seeds on the test split; write the report", file=out)
    if plan.get("replicates", 1) > 1:
        print(f"  all of it {plan['replicates']} times, once per replicate (its own data draw, search seed and "
              "confirmation seeds); one report", file=out)
    for method, search in plan["searches"].items():
        print(f"  {method}: {search['trials']} trials x up to {search['max_epochs']} epochs on {search['dataset']} "
              f"({search['classes']} classes, {search['images']['train']} training images), "
              f"{len(search['space'])} searched keys -> {search['experiment']}", file=out)
    for method, path in plan["continued"].items():
        print(f"  {method}: continues the search an earlier run of this compare left in {path}", file=out)
    print(f"  not checked: {plan['skipped']}", file=out)
