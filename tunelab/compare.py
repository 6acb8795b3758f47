"""`tunelab compare`: tune every method under the same budget on one transfer task, confirm each
best config with seeds on the test split, print the comparison table and write the report.

The default task is the one AdaRand asks about, offline: a backbone pretrained
(supervised) on source classes of a dataset (digits 0-4) is fine-tuned onto other, disjoint
target classes (5-9) with few labelled images per class; the classifier and ArcFace train on
the same target from scratch. `--source-classes ''` falls back to rotation pretraining on the
target's own training images, `--classes '' --train-per-class 0` to the whole dataset.

Same budget = same number of trials, same epochs per trial, same scheduler and seed for every
method. The source backbone is made once before the searches; its cost is reported separately,
not charged to any method.

`--replicates R` repeats all of it but the source pretraining R times, each replicate with its own
data draw, search seed and confirmation seeds, the methods paired within it; the table's headline
interval is then across replicates (tunelab.replicates, tunelab.analysis.replicates).

Ctrl-C or SIGTERM in any phase exits 130; the same command with the same --out continues the run
without doing anything twice (tunelab.compare_state).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.trainables import config_class
from tunelab.core import metrics as M
from tunelab.core.redaction import redact
from tunelab.trainables.fileio import check_output_path
from tunelab.duration import describe as describe_duration
from tunelab.duration import parse_duration
from tunelab.cluster import ray_session, reap_stale_session, starts_private_instance
from tunelab.core.processes import is_running
from tunelab.compare_state import (STATE_FILE, check_new_storage, how_to_continue, open_state, save_state,
                                   search_done)
from tunelab.compare_log import say
from tunelab.confirmations import confirm_all
from tunelab.experiments import experiment_path, normalise_storage
from tunelab.cluster import connect_ray
from tunelab.driver import run_tune, trial_slots
from tunelab.compare_options import CompareOptions, check_options
from tunelab.tune_options import TuneOptions
from tunelab import tracker_plugins as trackers
from tunelab import replicates as rep
from tunelab.compare_plan import fine_tunes, method_options, search_location
from tunelab.signals import stop_requested



def check_target_data(opts: CompareOptions) -> None:
    """Load the target task once before anything starts: an unknown class id, more images per class
    than the training split has, or missing data is refused here, not after the source pretraining."""
    from tunelab.trainables.configs import DataOptions
    from tunelab.trainables.data import load_dataset

    load_dataset(DataOptions(dataset=opts.dataset, data_dir=opts.data_dir, classes=opts.classes,
                             train_per_class=opts.train_per_class))
    if opts.source_classes:
        load_dataset(DataOptions(dataset=opts.dataset, data_dir=opts.data_dir, classes=opts.source_classes))


def run_compare(opts: CompareOptions) -> dict[str, Any]:
    checks_began = time.perf_counter()
    check_options(opts)
    opts = dataclasses.replace(opts, **trackers.resolve(opts))  # each search records them so
    trackers.check(opts)
    out = check_output_path(opts.out if opts.out is not None else
                            f"compare/{opts.dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}", "--out", "folder")
    continued = (out / STATE_FILE).is_file()
    state = open_state(out, opts)  # the same compare run again continues; other options are refused
    if not continued:
        check_new_storage(opts.storage)
    share = budget_share(opts)
    check_target_data(opts)
    from tunelab.dryrun import dry_run_compare

    # every method's search checked now (data, models, space, trackers, cache, locks), not when its
    # turn comes after the source pretraining and the searches before it
    plan = dry_run_compare(opts, out, share, (out / "source-backbone.pt").resolve() if needs_backbone(opts) else None)
    if opts.dry_run:
        return {"dry_run": plan}
    began = time.perf_counter()
    save_state(out, state)
    try:
        return _compare(opts, out, state, share, began, checks_s=began - checks_began)
    except KeyboardInterrupt:
        say(f"interrupted; what finished is kept in {out}: run the same command with --out {out} to continue")
        raise


def _compare(opts: CompareOptions, out: Path, state: dict[str, Any], share: float | None,
             began: float, checks_s: float = 0.0) -> dict[str, Any]:
    phases = {"checks": checks_s}  # where the run's seconds went, phase by phase
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[phase] = phases.get(phase, 0.0) + now - clock
        clock = now

    end_what_a_killed_run_left(state.get("ray", {}))
    private = starts_private_instance(opts.address)
    connect_ray(opts.address)
    state["ray"] = {**ray_session(private), "host": socket.gethostname(), "pid": os.getpid()}
    save_state(out, state)
    lap("ray")
    backbone = source_backbone(opts, out) if needs_backbone(opts) else None  # one for every replicate
    lap("source backbone")
    experiments, confirmations = {}, []
    for replicate in range(opts.replicates):
        found, seconds, confirmed = run_replicate(opts, out, backbone, share, state, replicate)
        experiments.update({(replicate, m): s for m, s in found.items()})
        confirmations.append(confirmed)
        phases["searches"] = phases.get("searches", 0.0) + seconds
        lap("confirmations")
        phases["confirmations"] -= seconds
    from tunelab.analysis.report import write_report

    say(f"writing the report to {out / 'report'}")
    report = write_report([s["experiment"] for s in experiments.values()], out / "report",
                          confirmations[0] if len(confirmations) == 1 else pd.concat(confirmations, ignore_index=True),
                          baseline=opts.baseline, replicates=replicate_of(opts, experiments))
    lap("report and plots")
    wall = time.perf_counter() - began
    say(f"where the {wall + checks_s:.0f} s went: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
    return {"out": str(out), "report": str(out / "report" / "report.md"), "table": report["table"],
            "wall_s": wall, "searches_s": phases["searches"], "phases_s": phases, "parallel": opts.parallel,
            "experiments": {rep.search_key(opts, m, r): redact(s["experiment"]) for (r, m), s in experiments.items()}}


def run_replicate(opts: CompareOptions, out: Path, backbone: Path | None, share: float | None,
                  state: dict[str, Any], replicate: int) -> tuple[dict[str, dict[str, Any]], float, pd.DataFrame]:
    """One replicate of the pipeline (the only one without --replicates): every method's search on
    its data draw, then the confirmation seeds. Returns (searches by method, their wall seconds,
    confirmation rows)."""
    if rep.replicated(opts):
        say(rep.describe(opts, replicate))
    began = time.perf_counter()
    found = (search_in_parallel(opts, out, backbone, share, state, replicate) if opts.parallel else
             search_one_after_another(opts, out, backbone, share, state, replicate))
    # read from where compare put them: a summary's location is redacted (a URI's credentials)
    found = {m: {**s, "experiment": search_location(opts, out, m, replicate)} for m, s in found.items()}
    seconds = time.perf_counter() - began
    say(f"confirming each best config with {opts.seeds} seeds on the test split")
    confirmed = confirm_all(found, opts.seeds, opts.cpus_per_trial, opts.gpus_per_trial, out,
                            replicate=replicate if rep.replicated(opts) else None)
    return found, seconds, confirmed


def replicate_of(opts: CompareOptions, experiments: dict[tuple[int, str], dict[str, Any]]) -> dict[str, int] | None:
    """experiment -> its replicate, for the report (None with one replicate: the report is as before)."""
    if not rep.replicated(opts):
        return None
    return {s["experiment"]: r for (r, _), s in experiments.items()}


def end_what_a_killed_run_left(previous: dict[str, Any]) -> None:
    """A compare killed outright (SIGKILL) leaves some processes of its private Ray instance (the
    raylet's agents) running: the run that continues it ends them, unless that compare still runs."""
    pid = previous.get("pid")
    if isinstance(pid, int) and previous.get("host") == socket.gethostname() and not is_running(pid):
        reap_stale_session(previous)


def search_one_after_another(opts: CompareOptions, out: Path, backbone: Path | None, share: float | None,
                             state: dict[str, Any], replicate: int = 0) -> dict[str, dict[str, Any]]:
    """Each method's search in turn, in this process, with the whole cluster to itself; a search
    an earlier run of this compare finished is kept, one it left unfinished is continued."""
    began, experiments = time.perf_counter(), {}
    for index, method in enumerate(opts.methods):
        key = rep.search_key(opts, method, replicate)  # the method itself with one replicate
        if key in state["searches"]:
            say(f"{key}: search finished in an earlier run, kept ({state['searches'][key]['experiment']})")
            experiments[method] = state["searches"][key]
            continue
        spent = time.perf_counter() - began
        left = f", about {spent / index * (len(opts.methods) - index):.0f} s of searching left" if index else ""
        say(f"tuning {key} ({index + 1}/{len(opts.methods)}): {opts.num_samples} trials x up to "
             f"{opts.max_epochs} epochs{left}")
        summary = continue_or_start(method_options(opts, method, out, backbone, share, replicate=replicate))
        if summary.get("interrupted"):  # Ctrl-C/SIGTERM stopped this search: stop the comparison too
            say(f"interrupted while tuning {method}; its experiment is resumable: "
                 f"tunelab resume {summary['experiment']}")
            raise KeyboardInterrupt
        experiments[method] = summary
        search_done(out, state, key, summary)
        if stop_requested():  # the stop came as its last trials ended: the search is complete, kept
            raise KeyboardInterrupt
    return experiments


def continue_or_start(opts: TuneOptions) -> dict[str, Any]:
    """One method's search: resumed where an earlier run of this compare left it, else started."""
    from tunelab.driver import resume

    path = experiment_path(normalise_storage(opts.storage), opts.name)
    how = how_to_continue(path)
    if how == "resume":
        say(f"{opts.method}: continuing the search an earlier run left unfinished ({redact(path)})")
        return resume(path, time_budget=opts.time_budget)  # a fresh share: the interrupted one's rest is unknown
    if how == "restart":
        say(f"{opts.method}: the earlier run stopped before the first trial; starting the search again")
    return run_tune(dataclasses.replace(opts, overwrite=how == "restart"))


def search_in_parallel(opts: CompareOptions, out: Path, backbone: Path | None, share: float | None,
                       state: dict[str, Any], replicate: int = 0) -> dict[str, dict[str, Any]]:
    """Every method's search at once, each a `tunelab tune` driver process joined to this cluster:
    Ray shares the cluster's trial slots between them, so one search's ASHA tail (a few trials
    left running) no longer leaves the rest of the cluster idle."""
    from tunelab.parallel import run_drivers

    cap = 0
    if share is not None:  # same window for all: equal slots make equal compute
        slots = trial_slots(opts.cpus_per_trial, opts.gpus_per_trial)
        cap = max(1, slots // len(opts.methods))
        say(f"parallel searches under a time budget: at most {cap} trial(s) at once each "
             f"(an equal share of the cluster's {slots} slots)")
    say(f"tuning {', '.join(opts.methods)} at the same time: {opts.num_samples} trials x up to "
         f"{opts.max_epochs} epochs each; their lines are prefixed with the method")
    key = {m: rep.search_key(opts, m, replicate) for m in opts.methods}  # the method itself with one replicate
    kept = {m: state["searches"][key[m]] for m in opts.methods if key[m] in state["searches"]}
    for method, summary in kept.items():
        say(f"{key[method]}: search finished in an earlier run, kept ({summary['experiment']})")
    searches = {m: method_options(opts, m, out, backbone, share, cap, replicate) for m in opts.methods if m not in kept}
    how = {m: how_to_continue(experiment_path(normalise_storage(o.storage), o.name)) for m, o in searches.items()}
    searches = {m: dataclasses.replace(o, overwrite=how[m] == "restart") for m, o in searches.items()}
    done = (run_drivers(searches, rep.logs(out, opts, replicate), resume={m for m in searches if how[m] == "resume"})
            if searches else {})
    for method in opts.methods:
        if method in done:
            search_done(out, state, key[method], done[method])
    return {m: kept.get(m) or done[m] for m in opts.methods}


def budget_share(opts: CompareOptions) -> float | None:
    """Each method's search gets an equal share of --time-budget (the source pretraining and the
    confirmation runs are not counted): equal budgets are what makes the comparison fair. In
    parallel the searches share the whole window instead, each with an equal share of the slots."""
    if opts.total_time_budget is None:
        return None
    total = parse_duration(opts.total_time_budget)
    if rep.replicated(opts):
        return replicate_budget_share(opts, total)
    if opts.parallel:
        say(f"time budget {describe_duration(total)}: all {len(opts.methods)} searches run in it at the same time "
             "(confirmation runs are not counted)")
        return total
    share = total / len(opts.methods)
    say(f"time budget {describe_duration(total)}: {describe_duration(share)} for each of the "
         f"{len(opts.methods)} searches (equal shares; confirmation runs are not counted)")
    return share


def replicate_budget_share(opts: CompareOptions, total: float) -> float:
    """With replicates the budget covers every replicate's searches: each replicate gets an equal
    window, shared by its methods as `budget_share` shares the whole budget with one replicate."""
    window = total / opts.replicates
    if opts.parallel:
        say(f"time budget {describe_duration(total)} for {opts.replicates} replicates: each replicate's "
             f"{len(opts.methods)} searches run at the same time in {describe_duration(window)} (confirmation runs "
             "are not counted)")
        return window
    share = window / len(opts.methods)
    say(f"time budget {describe_duration(total)}: {describe_duration(share)} for each of the "
         f"{opts.replicates * len(opts.methods)} searches ({opts.replicates} replicates x {len(opts.methods)} "
         "methods, equal shares; confirmation runs are not counted)")
    return share


def needs_backbone(opts: CompareOptions) -> bool:
    return bool(opts.source_classes) and any(fine_tunes(m) for m in opts.methods)


def source_backbone_config(opts: CompareOptions):
    """The source pretraining: supervised on the source classes, the fine-tuning methods' default
    architecture. Its split is the default one whatever the replicate: it holds no target image."""
    from tunelab.trainables.pretrain import PretrainConfig

    reference = next(config_class(m) for m in opts.methods if fine_tunes(m))()
    architecture = {k: getattr(reference, k) for k in ("model", "width", "cifar_stem", "batchnorm")}
    return PretrainConfig(task="supervised", dataset=opts.dataset, data_dir=opts.data_dir,
                          classes=opts.source_classes, epochs=opts.source_epochs, **architecture)


def source_backbone(opts: CompareOptions, out: Path) -> Path:
    """Pretrain (supervised) the fine-tuning methods' backbone on the source classes, once (for every
    replicate), with their default architecture; written to OUT/source-backbone.pt."""
    from tunelab.trainables.pretrain import pretrain

    config = source_backbone_config(opts)
    path = (out / "source-backbone.pt").resolve()  # trials run in Ray's own working folders
    if path.is_file():  # written whole (atomically) by an earlier run of this compare
        say(f"source backbone: made by an earlier run of this compare, kept ({path})")
        return path
    began = time.perf_counter()
    say(f"pretraining the fine-tuning backbone ({config.model}, width {config.width}) on {opts.dataset} classes "
         f"{opts.source_classes}, supervised, {opts.source_epochs} epochs")
    metrics = pretrain(config, path, quiet=True)
    say(f"source backbone: val/acc {metrics[M.VAL_ACC]:.4f} on the source classes, "
         f"{time.perf_counter() - began:.0f} s (not charged to any method) -> {path}")
    return path
