"""Assembles and runs a Ray Tune experiment for one method: `tunelab tune` and `tunelab resume`.

The method's trainable comes from `tunelab.trainables.METHODS`, its search space from `search_spaces`
(with --space overrides), fixed values from --set. The in-memory dataset is loaded once here
and shared with every trial through the object store (`tune.with_parameters`); resources per
trial go through `tune.with_resources`. Everything a later `resume`, `report` or `best` needs is
recorded in `tunelab.json` at the experiment root.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.analysis.load import rank_trials, status_from
from tunelab.analysis.record import (FINAL_STATUSES, TUNELAB_FILE, experiment_identity,
                             is_uri, join_uri,
                             local_path, read_record, redact, redact_all, write_record)
from tunelab.search_spaces import space_for
from tunelab.search_spaces.base import (Choice, SearchSpace, describe, settle_conditions)
from tunelab.search_spaces.overrides import apply_overrides, load_space_file
from tunelab.trainables import METHOD_CLASSES, METHODS, get_method
from tunelab.trainables import metrics as M
from tunelab.trainables.config import build_config, to_dict
from tunelab.trainables.errors import ConfigError
from tunelab.trainables.fileio import refuse_link
from tunelab.core.statuses import UNFINISHED_RAY_STATUSES, TrialStatus
from tunelab.core.trial_folders import parse_trial_folder_name, trial_folder_name
from tunelab.compat.ray import restored_search_state_follows_the_folder
from tunelab.legacy import old_package_names
from tunelab.cluster import (check_cluster, check_local_resources, check_reachable, connect_ray, ray_session,
                             reap_stale_session, starts_private_instance)
from tunelab.experiments import (ExperimentLock, check_free, check_name, check_storage_writable, experiment_path,
                                 normalise_storage, prepare_folder, repair_latest_checkpoints)
from tunelab.credentials import for_resume, hand_over
from tunelab.study import check_optuna_storage, check_reconnect, check_resumed_study, claim_study, replace_study
from tunelab.budget import TimeBudget, budget_was_spent, session_deadline, start_session
from tunelab.duration import parse_duration
from tunelab.budget import reset as reset_budget
from tunelab.trainables.phases import mark
from tunelab.tune_options import TuneOptions, check_options, fixed_values
from tunelab.ray_state import check_and_repair, close_trials_ended_on_disk
from tunelab.signals import STOP_REQUESTED
from tunelab.searcher_plugins import searcher_for
from tunelab.searchers.common import startup_trials
# pickled by name into random searches recorded before 0.2: they resume through this
from tunelab.searchers.random_search import ConditionalDraw  # noqa: F401
from tunelab.preflight import absolute_sqlite_url, absolute_tracking_uri, check_recorded_paths
from tunelab.provenance import environment_record

def resolve_relative_urls(opts: TuneOptions) -> None:
    """Relative paths in --optuna-storage and --mlflow are made absolute (in `opts`, so the record
    holds them so): `resume` from another folder then reaches the same databases."""
    if opts.optuna_storage:
        opts.optuna_storage = absolute_sqlite_url(opts.optuna_storage)
    opts.mlflow = absolute_tracking_uri(opts.mlflow)


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


# ----------------------------------------------------------------------------- Ray

def allow_parallel_pending_trials(opts: TuneOptions) -> None:
    """Let Tune queue as many trials as can run at once.

    With any searcher but its own random one, Tune keeps a single pending trial by default, so
    trials start one after another and an idle CPU waits for the next suggestion; the Optuna
    sampler's constant liar is what makes parallel suggestions safe.
    """
    slots = trial_slots(opts.cpus_per_trial, opts.gpus_per_trial)
    if opts.max_concurrent:
        slots = min(slots, opts.max_concurrent)
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(1, slots))


def trial_slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """Trials the connected cluster can run at once with these resources per trial (at least 1)."""
    import ray

    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // cpus_per_trial)
    if gpus_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) // gpus_per_trial))
    return max(1, slots)


# ----------------------------------------------------------------------------- assembly

def build_trainable(opts: TuneOptions, data):
    """The method's trainable with the shared data, its checkpoint interval and this session's
    deadline (set by `begin_session`)."""
    from ray import tune

    trainable = tune.with_parameters(METHODS[opts.method], data=data,
                                     checkpoint_interval_s=opts.checkpoint_interval_s,
                                     deadline=session_deadline())
    return tune.with_resources(trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})


def keep_default_loggers_off() -> None:
    """Tune adds CSV, JSON and TensorBoard loggers unless told not to; tunelab passes its own."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"


def logger_callbacks(tensorboard: bool) -> list:
    """progress.csv and result.json always (analysis reads them); TensorBoard files on request.

    Ray adds a TensorBoard logger by default; its per-result summaries and writer thread cost the
    driver CPU that, on a small machine, trials would otherwise use.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    keep_default_loggers_off()
    return [CSVLoggerCallback(), JsonLoggerCallback()] + ([TBXLoggerCallback()] if tensorboard else [])


def run_config(opts: TuneOptions, name: str, storage: str, record: dict[str, Any]):
    from ray import tune

    from tunelab.progress import ProgressLines
    from tunelab.stopping import StopWhenReached

    stop = StopWhenReached(opts.metric, opts.mode, opts.stop_at) if opts.stop_at is not None else None
    return tune.RunConfig(
        name=name, storage_path=storage, verbose=0, stop=stop,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=opts.metric,
                                                checkpoint_score_order=opts.mode),
        # TimeBudget is always there (Ray pickles the callbacks with the experiment); it acts only in a
        # session given --time-budget, so `resume --time-budget` works for every experiment.
        callbacks=[ProgressLines(opts.num_samples, opts.metric, opts.max_epochs), TimeBudget(),
                   *logger_callbacks(opts.tensorboard), *tracker_callbacks(opts, record)])


def check_trackers(mlflow: str | None, wandb: str | None) -> None:
    """--mlflow / --wandb refused (extra not installed, bad URI or project, no W&B login) before
    anything starts; their modules are imported only when asked for."""
    if mlflow is not None:
        from tunelab.tracking import check_mlflow

        check_mlflow(mlflow)
    if wandb is not None:
        from tunelab.tracking_wandb import check_wandb

        check_wandb(wandb)


def tracker_callbacks(opts: TuneOptions, record: dict[str, Any]) -> list:
    callbacks = []
    if opts.mlflow is not None:
        from tunelab.tracking import TunelabMLflowCallback

        callbacks.append(TunelabMLflowCallback(hand_over(opts.mlflow), record))
    if opts.wandb is not None:
        from tunelab.tracking_wandb import TunelabWandbCallback

        folder = local_path(record["experiment"])  # offline runs beside the experiment's own files
        callbacks.append(TunelabWandbCallback(opts.wandb, record, str(folder) if folder else None))
    return callbacks


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


def trial_dirname(trial) -> str:
    """Short, stable folder names (Ray's default packs the whole config into the name)."""
    return trial_folder_name(trial.trainable_name, trial.trial_id)


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
    check_optuna_storage(opts, name, path)
    check_trackers(opts.mlflow, opts.wandb)
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


def run_tune(opts: TuneOptions, argv: list[str] | None = None) -> dict[str, Any]:
    """Run a search; returns the summary (`experiment`, `trials`, `best_config`, `best_metric`, ...).

    Once `plan_search` has passed, the experiment is locked, its folder made (or an old experiment
    and its study replaced under --overwrite), its record written and the search started.
    """
    plan = plan_search(opts)
    with ExperimentLock(plan.path) as lock:
        lock.note(**ray_session(plan.private))
        begin_session(opts.time_budget)
        replace_experiment(opts, plan)
        allow_parallel_pending_trials(opts)
        from ray import tune

        search_alg, sampled, scheduler = build_search(opts, plan.space, plan.name)
        record = experiment_record(opts, plan.name, plan.path, plan.fixed, plan.space, argv)
        write_record(plan.path, record)
        tuner = tune.Tuner(
            build_trainable(opts, plan.data),
            param_space={**plan.fixed, **sampled},
            tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                        # recorded with the experiment: Tuner.restore(...).get_results()
                                        # .get_best_result() needs no arguments
                                        metric=opts.metric, mode=opts.mode,
                                        num_samples=opts.num_samples,
                                        max_concurrent_trials=opts.max_concurrent or None,
                                        # a finished trial's worker process (torch imported, data mapped)
                                        # takes the next trial instead of a fresh actor starting up
                                        reuse_actors=True,
                                        trial_dirname_creator=trial_dirname),
            run_config=run_config(opts, plan.name, plan.storage, record),
        )
        return fit_and_finish(tuner, record, plan.path)


def replace_experiment(opts: TuneOptions, plan: SearchPlan) -> None:
    """Make the experiment's folder and study, replacing under --overwrite what the old experiment
    of this location left: its files, its Optuna study, its MLflow runs (each said on stderr)."""
    prepare_folder(plan.path, opts.overwrite)
    replace_study(opts, plan.name, plan.path)
    if opts.overwrite and opts.mlflow is not None:
        from tunelab.tracking import retire_runs

        retire_runs(opts.mlflow, plan.name, plan.path)
    claim_study(opts, plan.name, plan.path)


def begin_session(time_budget: str | None) -> None:
    """This session's time budget (none unless given), for the TimeBudget callback and the trainables."""
    reset_budget()
    start_session(parse_duration(time_budget) if time_budget is not None else None)


def fit_and_finish(tuner, record: dict[str, Any], path: str) -> dict[str, Any]:
    from tunelab.progress import LAST_STATUSES

    LAST_STATUSES.clear()
    mark("fit_start")
    with tune_signal_handlers_restored():
        grid = tuner.fit()
    mark("fit_end")
    summary = finish(grid, record, path)
    mark("run_end")
    return summary


@contextlib.contextmanager
def tune_signal_handlers_restored():
    """Tune's fit installs SIGINT/SIGUSR1 handlers that only set a flag, and removes them only
    when a signal came: after a search they would swallow Ctrl-C/SIGTERM (compare's confirmations
    ran on, exit 0). Put back what was there before."""
    import signal

    names = [name for name in ("SIGINT", "SIGUSR1") if hasattr(signal, name)]
    before = {name: signal.getsignal(getattr(signal, name)) for name in names}
    try:
        yield
    finally:
        tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
        if tune_catches and before.get("SIGINT") is not None and signal.getsignal(signal.SIGINT) is before["SIGINT"]:
            STOP_REQUESTED.set()  # Tune puts the previous handler back only when a stop signal came
        for name, handler in before.items():
            if handler is not None and threading.current_thread() is threading.main_thread():
                signal.signal(getattr(signal, name), handler)


def options_from_record(record: dict[str, Any], path: str) -> TuneOptions:
    """The TuneOptions a record was made with; a record of other options is refused, naming the field."""
    options = record["options"]
    known = {f.name for f in dataclasses.fields(TuneOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{path}/{TUNELAB_FILE!s}: field 'options.{unknown[0]}' is not a tune option of this "
                          f"version; valid: {', '.join(sorted(known))}")
    if options.get("method") not in METHOD_CLASSES:
        raise ConfigError(f"{path}/{TUNELAB_FILE}: field 'options.method' is {options.get('method')!r}; "
                          f"valid: {', '.join(METHOD_CLASSES)}")
    try:
        opts = TuneOptions(**options)
        check_options(opts)
    except TypeError as exc:
        raise ConfigError(f"{path}/{TUNELAB_FILE}: field 'options' is incomplete ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}/{TUNELAB_FILE}: field 'options': {exc}") from None
    return opts


def resume(path: str, resume_errored: bool = False, restart_errored: bool = False,
           address: str | None = None, time_budget: str | None = None, optuna_storage: str | None = None,
           mlflow: str | None = None) -> dict[str, Any]:
    """Continue an interrupted experiment (or one its time budget ended): unfinished trials resume
    from their checkpoints; `time_budget` is this session's own. `optuna_storage` and `mlflow` give
    again a password the record does not keep (tunelab.credentials)."""
    if time_budget is not None:
        parse_duration(time_budget)
    if not is_uri(path):
        path = str(Path(os.path.expanduser(path)).resolve())
    if local_path(path) is not None:
        refuse_link(Path(local_path(path)) / TUNELAB_FILE, "experiment record")
    record = read_record(path)
    opts = options_from_record(record, path)
    check_recorded_paths(record["options"], f"{path}/{TUNELAB_FILE}")
    if time_budget is not None and "time_budget" not in record["options"]:
        raise ConfigError(f"{path!r} was made by a tunelab without --time-budget; resume it without one")
    from ray import tune

    if not tune.Tuner.can_restore(path):
        raise ConfigError(f"{path!r} has a {TUNELAB_FILE} but no Ray Tune state to restore from "
                          "(the driver stopped before the first trial started); start it again with `tunelab tune`")
    if resume_errored and restart_errored:
        raise ConfigError("--resume-errored and --restart-errored exclude each other; choose one")
    searcher = searcher_for(opts.search)
    param_space = searcher.restored_param_space(opts, record, path)
    study_url = for_resume("--optuna-storage", record["search"].get("optuna_storage"), optuna_storage, path)
    check_reconnect(study_url, path)
    for_resume("--mlflow", record["options"].get("mlflow"), mlflow, path)
    with ExperimentLock(path) as lock, old_package_names(record):
        reap_stale_session(lock.previous)
        check_and_repair(path, searcher)  # a state file the kill cut short: rebuilt, or one line
        if searcher.keeps_an_optuna_study:  # after the state check: a copy's cut state is named before its borrowed study
            check_resumed_study(study_url, record["name"], path)
        close_trials_ended_on_disk(path, opts.max_epochs)  # ended after Ray's last snapshot: not run again
        begin_session(time_budget)
        data = load_shared_data(opts.method, dict(record["fixed"]))
        private = starts_private_instance(address or opts.address)
        connect_ray(address or opts.address)
        lock.note(**ray_session(private))
        repair_latest_checkpoints(path, resume_errored)
        # A copy, or a moved folder, resumes where it is now. The record keeps locations redacted
        # (tunelab.analysis.record.redact): compared and written so, a key in the URI stays out of it.
        moved = experiment_identity(redact(record["experiment"])) != experiment_identity(redact(path))
        if moved:
            record["experiment"] = redact(path)
        if record.pop(FINAL_STATUSES, None) is not None or moved:
            write_record(path, record)  # trials about to run again are no longer final
        allow_parallel_pending_trials(opts)
        if "tensorboard" in record["options"]:
            # The restored run config brings tunelab's own loggers; experiments made before they were
            # passed explicitly still rely on Tune's defaults.
            keep_default_loggers_off()
        tuner = tune.Tuner.restore(path, trainable=build_trainable(opts, data), resume_unfinished=True,
                                   resume_errored=resume_errored, restart_errored=restart_errored,
                                   param_space=param_space)
        with restored_search_state_follows_the_folder():
            return fit_and_finish(tuner, record, path)


def build_search(opts: TuneOptions, space: SearchSpace, name: str):
    """(search algorithm, param_space entries it does not sample itself, scheduler), from the
    searcher `--search` names (tunelab.searchers)."""
    return searcher_for(opts.search).build(opts, space, name)


# ----------------------------------------------------------------------------- records and summaries

def experiment_record(opts: TuneOptions, name: str, path: str, fixed: dict[str, Any], space: SearchSpace,
                      argv: list[str] | None) -> dict[str, Any]:
    method = get_method(opts.method)
    defaults = to_dict(build_config(method.config_class, {}))
    # the record is also what trackers tag runs with and summaries print: no password in it
    return redact_all({
        "format": 1,
        "method": opts.method,
        "dataset": fixed.get("dataset", defaults["dataset"]),
        "experiment": path,
        "name": name,
        "metric": opts.metric,
        "mode": opts.mode,
        "options": {**opts.__dict__, "name": name},
        "fixed": fixed,
        "search_space": describe(space),
        "search": {"algorithm": opts.search, "seed": opts.seed, "startup_trials": startup_trials(opts),
                   "optuna_storage": opts.optuna_storage},
        "scheduler": {"kind": opts.scheduler, "time_attr": M.EPOCH, "max_t": opts.max_epochs,
                      "grace_period": opts.grace_period, "reduction_factor": opts.reduction_factor},
        "resources": {"cpus_per_trial": opts.cpus_per_trial, "gpus_per_trial": opts.gpus_per_trial,
                      "threads_per_trial": fixed.get("threads")},
        "config_defaults": defaults,
        "command": ["tunelab", *(argv or [])],
        **environment_record(),
    })


def finish(grid, record: dict[str, Any], path: str) -> dict[str, Any]:
    """Record every trial's final status in tunelab.json, then summarise.

    Ray's experiment snapshot can still be on its way to the storage when `fit` returns (its last
    sync is skipped while an earlier one runs), so a reader could see a retried trial as errored;
    the driver's own view of the finished grid is written where analysis looks first. A search
    that Ctrl-C or SIGTERM ended leaves trials RUNNING/PENDING in Ray's view: they are recorded
    `incomplete` (resumable) and the summary says `interrupted`.
    """
    summary = summarise(grid, record)
    write_record(path, {**record, FINAL_STATUSES: summary.pop("trial_statuses")})
    return summary


def summarise(grid, record: dict[str, Any]) -> dict[str, Any]:
    metric, mode = record["metric"], record["mode"]
    config_class = METHOD_CLASSES[record["method"]].config_class
    max_epochs = record["scheduler"]["max_t"]
    from tunelab.progress import LAST_STATUSES as last_statuses

    scored: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}
    trial_statuses: dict[str, str] = {}
    error_files: list[str] = []
    for result in grid:
        frame = result.metrics_dataframe
        last = result.metrics or {}
        # A trial that never reported has no trial_id but its folder's name.
        parsed = parse_trial_folder_name(Path(result.path).name, record["method"])
        trial_id = str(last.get("trial_id") or (parsed[1] if parsed else Path(result.path).name))
        ray_status = last_statuses.get(trial_id, "")
        status = status_from(int(last.get(M.EPOCH, 0)), bool(last.get(M.DIVERGED)), result.error is not None,
                             max_epochs, ray_status if ray_status in UNFINISHED_RAY_STATUSES else "")
        if status == TrialStatus.INCOMPLETE and budget_was_spent():
            status = TrialStatus.OUT_OF_TIME.value  # left unfinished by the time budget, not by an interruption
        statuses[status] = statuses.get(status, 0) + 1
        trial_statuses[trial_id] = status
        if status == TrialStatus.ERRORED:
            error_files.append(join_uri(record["experiment"], Path(result.path).name, "error.txt"))
        if frame is None or metric not in frame or frame[metric].dropna().empty:
            continue
        values = frame[metric].dropna()
        scored.append({"trial_id": trial_id, metric: float(values.max() if mode == "max" else values.min()),
                       "config": result.config})
    ranked = rank_trials(pd.DataFrame(scored), metric, mode)
    best = ranked.iloc[0] if not ranked.empty else None
    best_value = float(best[metric]) if best is not None else None
    best_trial = best["trial_id"] if best is not None else None
    best_config = to_dict(build_config(config_class, best["config"])) if best is not None else None
    return {"experiment": record["experiment"], "method": record["method"], "dataset": record["dataset"],
            "trials": len(grid), "statuses": statuses, "trial_statuses": trial_statuses,
            "best_trial": best_trial, "best_metric": best_value,
            "metric": metric, "best_config": best_config,
            "interrupted": not budget_was_spent() and _interrupted(statuses, len(grid), record, best_value),
            "out_of_time": budget_was_spent(), "deadline": session_deadline(), "error_files": error_files}


def _interrupted(statuses: dict[str, int], trials: int, record: dict[str, Any], best: float | None) -> bool:
    """Trials left incomplete, or fewer trials than asked for without --stop-at having ended the search."""
    if statuses.get(TrialStatus.INCOMPLETE):
        return True
    target = record["options"].get("stop_at")
    reached = target is not None and best is not None and (best >= target if record["mode"] == "max" else best <= target)
    return trials < int(record["options"].get("num_samples", trials)) and not reached
