"""Assembles and runs a Ray Tune experiment for one method: `tunelab tune` and `tunelab resume`.

`tunelab.search_plan` checks and prepares everything first (options, space, storage, data);
here the method's trainable (from `tunelab.trainables.METHODS`) gets the in-memory dataset through
the object store (`tune.with_parameters`) and its resources (`tune.with_resources`), the
registered searcher builds the search, and Ray Tune runs it. Everything a later `resume`, `report`
or `best` needs is recorded in `tunelab.json` (`tunelab.summaries`) at the experiment root.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

from tunelab.core.record import FINAL_STATUSES, TUNELAB_FILE, read_record, write_record
from tunelab.core.storage import experiment_identity, is_uri, local_path
from tunelab.core.redaction import redact
from tunelab.search_spaces.base import SearchSpace
from tunelab.trainables import METHOD_CLASSES, METHODS
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import refuse_link
from tunelab.core.trial_folders import trial_folder_name
from tunelab.compat.ray import (no_snapshot_right_after_restore, restore_reads_no_results,
                                 restored_search_state_follows_the_folder)
from tunelab.legacy import old_package_names
from tunelab.cluster import connect_ray, driver_session, ray_session, reap_stale_session, starts_private_instance
from tunelab.experiment_lock import ExperimentLock
from tunelab.experiments import prepare_folder, refuse_linked_trial_folders, repair_latest_checkpoints
from tunelab.credentials import for_resume
from tunelab.study import check_reconnect, check_resumed_study, claim_study, replace_study
from tunelab.budget import TimeBudget, session_deadline, start_session
from tunelab.duration import parse_duration
from tunelab.budget import reset as reset_budget
from tunelab.trainables.phases import mark
from tunelab.tune_options import TuneOptions, check_options
from tunelab.ray_state import check_and_repair, has_experiment_state, results_read_once
from tunelab.state_mirror import local_state
from tunelab.late_trials import (adopt_trials_created_after_the_snapshot, close_trials_ended_on_disk,
                                 free_slots_of_ended_trials)
from tunelab.staged_files import recover_staged_trial_files
from tunelab.signals import STOP_REQUESTED
from tunelab.searcher_plugins import searcher_for
from tunelab import tracker_plugins as trackers
# pickled by name into random searches recorded before 0.2: they resume through this
from tunelab.searchers.random_search import ConditionalDraw  # noqa: F401
from tunelab.preflight import check_recorded_paths
from tunelab.search_plan import SearchPlan, load_shared_data, plan_search
from tunelab.summaries import experiment_record, finish

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
    from tunelab.trial_files import SaveEndedTrialFiles
    from tunelab.whole_snapshot import KeepWholeSnapshot

    stop = StopWhenReached(opts.metric, opts.mode, opts.stop_at) if opts.stop_at is not None else None
    return tune.RunConfig(
        name=name, storage_path=storage, verbose=0, stop=stop,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=opts.keep_checkpoints, checkpoint_score_attribute=opts.metric,
                                                checkpoint_score_order=opts.mode),
        # TimeBudget is always there (Ray pickles the callbacks with the experiment); it acts only in a
        # session given --time-budget, so `resume --time-budget` works for every experiment.
        # SaveEndedTrialFiles comes after the loggers: it copies what they wrote.
        callbacks=[ProgressLines(opts.num_samples, opts.metric, opts.max_epochs), TimeBudget(),
                   *logger_callbacks(opts.tensorboard), SaveEndedTrialFiles(), KeepWholeSnapshot(),
                   *trackers.callbacks(opts, record)])


def trial_dirname(trial) -> str:
    """Short, stable folder names (Ray's default packs the whole config into the name)."""
    return trial_folder_name(trial.trainable_name, trial.trial_id)


def run_tune(opts: TuneOptions, argv: list[str] | None = None) -> dict[str, Any]:
    """Run a search; returns the summary (`experiment`, `trials`, `best_config`, `best_metric`, ...).

    Once `plan_search` has passed, the experiment is locked, its folder made (or an old experiment
    and its study replaced under --overwrite), its record written and the search started.
    """
    plan = plan_search(opts)
    with ExperimentLock(plan.path) as lock:
        lock.note(**ray_session(plan.private), **driver_session())
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
    of this location left: its files, its Optuna study, its trackers' runs (each said on stderr)."""
    prepare_folder(plan.path, opts.overwrite)
    replace_study(opts, plan.name, plan.path)
    if opts.overwrite:
        trackers.retire(opts, plan.name, plan.path)
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


def experiment_name(path: str) -> str:
    """The experiment's name as its folder (or URI) has it now: a copy's, not its record's."""
    local = local_path(path)
    return local.name if local is not None else urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1]


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

    if not tune.Tuner.can_restore(path) or not has_experiment_state(path):
        raise ConfigError(f"{path!r} has a {TUNELAB_FILE} but no Ray Tune state to restore from (the driver "
                          "stopped before Ray recorded its first trial); nothing was changed; start it again with "
                          f"`tunelab tune ... --name {experiment_name(path)} --overwrite` with the --storage that holds it")
    refuse_linked_trial_folders(path, opts.method)
    if resume_errored and restart_errored:
        raise ConfigError("--resume-errored and --restart-errored exclude each other; choose one")
    searcher = searcher_for(opts.search)
    param_space = searcher.restored_param_space(opts, record, path)
    study_url = for_resume("--optuna-storage", record["search"].get("optuna_storage"), optuna_storage, path)
    check_reconnect(study_url, path)
    for_resume("--mlflow", record["options"].get("mlflow"), mlflow, path)
    with ExperimentLock(path) as lock, old_package_names(record):
        reap_stale_session(lock.previous)
        # on object storage, a local mirror uploaded back after; each result file read once
        with local_state(path) as state, results_read_once():
            check_and_repair(state, searcher)  # a state file the kill cut short: rebuilt, or one line
            if searcher.keeps_an_optuna_study:  # after the state check: a copy's cut state is named before its borrowed study
                check_resumed_study(study_url, record["name"], path)
            # Out of step after a kill (tunelab.late_trials): result files still in Ray's staging folder
            # are copied in, trials that ended or were created after Ray's last snapshot are recorded,
            # and no concurrency slot is held for an ended trial.
            recover_staged_trial_files(path, lock.previous)
            # adopted first: restoring the searcher to close trials would fail their study trials as lost
            adopt_trials_created_after_the_snapshot(state, opts.max_epochs, searcher)
            close_trials_ended_on_disk(state, opts.max_epochs)
            free_slots_of_ended_trials(state)
        begin_session(time_budget)
        data = load_shared_data(opts.method, dict(record["fixed"]))
        private = starts_private_instance(address or opts.address)
        connect_ray(address or opts.address)
        lock.note(**ray_session(private), **driver_session())
        repair_latest_checkpoints(path, resume_errored)
        # A copy, or a moved folder, resumes where it is now. The record keeps locations redacted
        # (tunelab.core.redaction.redact): compared and written so, a key in the URI stays out of it.
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
        with restore_reads_no_results():
            tuner = tune.Tuner.restore(path, trainable=build_trainable(opts, data), resume_unfinished=True,
                                       resume_errored=resume_errored, restart_errored=restart_errored,
                                       param_space=param_space)
        with restored_search_state_follows_the_folder(), no_snapshot_right_after_restore():
            return fit_and_finish(tuner, record, path)


def build_search(opts: TuneOptions, space: SearchSpace, name: str):
    """(search algorithm, param_space entries it does not sample itself, scheduler), from the
    searcher `--search` names (tunelab.searchers)."""
    return searcher_for(opts.search).build(opts, space, name)
