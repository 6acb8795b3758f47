"""Ray internals tunelab relies on, each with the reason no public API serves.

Everything private of Ray (Tune, Train, its W&B and MLflow integrations) that tunelab touches is
spelled here and nowhere else (a test counts the uses elsewhere: none). tests/tunelab/test_compat.py
pins each behaviour relied on, so a version bump that changes one fails there first, by name.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def restored_search_state_follows_the_folder() -> Iterator[None]:
    """While a restored Tuner runs: trials created after the restore go to the folder it was
    restored from.

    Ray Tune saves its search generator's state with the Experiment it was made for, whose storage
    names the folder the experiment was first written to, and `Tuner.restore` brings it back
    unchanged. Restored from a copy or a moved folder, new trials would be written to the original
    (which may be somebody else's) and their results lost to this one. After the controller has
    restored that state, it is pointed at the controller's own storage (the restored folder).
    """
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.resume

    def resume(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _point_search_at(self._search_alg, self._storage)

    TuneController.resume = resume
    try:
        yield
    finally:
        TuneController.resume = original


@contextlib.contextmanager
def no_snapshot_right_after_restore() -> Iterator[None]:
    """While a restored Tuner runs: its first experiment snapshot comes a snapshot period after the
    restore (10 s at first, as in a new run), not in its first step.

    Ray's controller starts a new session's snapshot clock at minus infinity, so its first step
    serialises every trial again, before the first new trial can start: 21 s of a 5,000-trial
    resume. The snapshot on disk is the one just restored from, so it stays good for a resume
    until the next one is written.
    """
    import time

    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.resume

    def resume(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._checkpoint_manager._last_save_time = time.monotonic()

    TuneController.resume = resume
    try:
        yield
    finally:
        TuneController.resume = original


@contextlib.contextmanager
def restore_reads_no_results() -> Iterator[None]:
    """While `Tuner.restore` runs: it reads Ray's trials, not every trial's result file.

    `Tuner.restore` builds an ExperimentAnalysis only for `Tuner.get_results()` before `fit()`,
    which tunelab never calls (`fit()` returns its own); building it reads every trial's results
    into a DataFrame: 29 s of a 5,000-trial resume before any new trial could start.
    """
    from ray.tune.analysis import ExperimentAnalysis
    from ray.tune.impl import tuner_internal

    class TrialsOnly(ExperimentAnalysis):
        def _fetch_trial_dataframes(self) -> dict:
            return {}

    original = tuner_internal.ExperimentAnalysis
    tuner_internal.ExperimentAnalysis = TrialsOnly
    try:
        yield
    finally:
        tuner_internal.ExperimentAnalysis = original


@contextlib.contextmanager
def timed_snapshots(durations: list[float]) -> Iterator[None]:
    """While it runs, each experiment snapshot the driver writes (TuneController.save_to_dir: the
    trials' states, the searcher's, the callbacks') appends its seconds to `durations`. For the
    scale benchmark: Ray reports a snapshot's time only when it adjusts its snapshot period."""
    import time

    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.save_to_dir

    def save_to_dir(self, *args, **kwargs):
        began = time.perf_counter()
        original(self, *args, **kwargs)
        durations.append(time.perf_counter() - began)

    TuneController.save_to_dir = save_to_dir
    try:
        yield
    finally:
        TuneController.save_to_dir = original


def trials_of_state(state_file, experiment, statuses: set[str]) -> list:
    """Ray's `Trial`s in `statuses` from the experiment state `state_file` of the local experiment
    folder `experiment`, their checkpoints' paths following the folder where it now is, as
    ExperimentAnalysis loads them, without reading any trial's results (it reads them all)."""
    import copy
    import json

    import pyarrow.fs
    from ray.tune.experiment import Trial

    with open(state_file) as handle:
        state = json.load(handle)
    trials = []
    for trial_json, metadata_json in state["trial_data"]:
        if json.loads(trial_json)["status"] not in statuses:
            continue
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(metadata_json)
        storage = copy.copy(trial.storage)
        storage.storage_fs_path = str(experiment.parent)
        storage.storage_filesystem = pyarrow.fs.LocalFileSystem()
        storage.experiment_dir_name = experiment.name
        trial.set_storage(storage)
        trials.append(trial)
    return trials


def _point_search_at(search_alg, storage) -> None:
    """Give a restored search generator's saved experiment spec(s) the restored folder's storage."""
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.search_generator import SearchGenerator

    if isinstance(search_alg, SearchGenerator):
        search_alg._experiment.storage = storage
        search_alg._experiment.spec["storage"] = storage
    elif isinstance(search_alg, BasicVariantGenerator):
        for iterator in search_alg._iterators:
            iterator.unresolved_spec["storage"] = storage
    else:
        raise TypeError(f"a restored search of an unknown kind: {type(search_alg).__name__}")


def trial_entry_as_ended(entry: tuple[str, str], rows: list[dict], final_checkpoint: str | None,
                         ended: bool = True) -> tuple[str, str]:
    """One trial's entry of Ray's experiment state (trial JSON, run metadata JSON), rewritten as
    Ray writes it once the driver has seen the trial end: the result rows it missed added in
    order (its last result, its metric analysis), its checkpoint folder named `final_checkpoint` as
    its latest, TERMINATED. With `ended` False, as Ray writes a trial to continue: PENDING, resumed
    from that checkpoint (from its start if None).

    Ray's own codec reads and writes the entry (`Trial.from_json_state`, `get_json_state`); the
    checkpoint bookkeeping has no public setter. The final checkpoint is added without Ray's
    eviction, which would delete older checkpoint folders: a trial that runs no more evicts nothing.
    """
    import json

    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

    trial = Trial.from_json_state(entry[0], stub=True)  # stub: the trainable need not be registered here
    trial.restore_run_metadata(entry[1])
    seen = int((trial.last_result or {}).get("training_iteration", 0))
    by_iteration = {int(row.get("training_iteration", 0)): row for row in rows}  # a re-run epoch: its last row
    for iteration in sorted(i for i in by_iteration if i > seen):
        trial.update_last_result(dict(by_iteration[iteration]))
    if final_checkpoint is not None:
        manager = trial.run_metadata.checkpoint_manager
        checkpoint = Checkpoint(f"{trial.storage.trial_fs_path}/{final_checkpoint}",
                                filesystem=trial.storage.storage_filesystem)
        result = _TrainingResult(checkpoint=checkpoint, metrics=dict(trial.last_result))
        manager._checkpoint_results.append(result)
        manager._latest_checkpoint_result = result
    trial.set_status(Trial.TERMINATED if ended else Trial.PENDING)
    trial.stub = json.loads(entry[0]).get("stub", False)  # as the driver wrote it (read as a stub above)
    trial.invalidate_json_state()
    trial.run_metadata.invalidate_cache()
    return trial.get_json_state()


def drop_checkpoints(metadata_json: str, lost) -> tuple[str, int]:
    """A trial's run metadata (experiment-state JSON) without the checkpoints `lost(path)` names,
    its latest kept whatever; returns (the metadata JSON, how many were dropped). Ray's codec reads
    and writes it; the checkpoint list has no public setter."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    metadata = _TrainingRunMetadata.from_json_state(metadata_json)
    manager = metadata.checkpoint_manager
    results = getattr(manager, "_checkpoint_results", None) or []
    latest = manager.latest_checkpoint_result
    kept = [r for r in results if r is latest or r.checkpoint is None or not lost(r.checkpoint.path)]
    if len(kept) == len(results):
        return metadata_json, 0
    manager._checkpoint_results = kept
    return metadata.get_json_state(), len(results) - len(kept)


def recorded_cluster_address() -> str | None:
    """The cluster address recorded on this machine (what ray.init() without an address joins),
    None when none is; raises ConnectionError like Ray when the record names nothing running. Ray
    resolves it only in a private helper."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address("auto")


def session_dir() -> str:
    """This driver's Ray session folder (logs, sockets); Ray exposes it only on its private node."""
    import ray

    return ray._private.worker.global_worker.node.get_session_dir_path()


# ----------------------------------------------------------------------------- OptunaSearch

class OptunaSearchHooks:
    """Public names for the state of Ray's OptunaSearch that a subclass extends (mixed in before it):
    Ray keeps its study, its trial map and its completed set in private attributes."""

    @property
    def optuna_study(self):
        return self._ot_study

    @property
    def optuna_trials(self) -> dict:
        """Ray trial id -> optuna.Trial."""
        return self._ot_trials

    @property
    def completed_trial_ids(self) -> set:
        return self._completed_trials

    @property
    def optuna_space(self):
        """The space as given: a dict of distributions, or the define-by-run callable."""
        return self._space

    def config_from_define_by_run(self, func, ot_trial) -> dict:
        """The trial's config from a define-by-run space; Ray's default. Ray calls the private
        `_suggest_from_define_by_run_func`, forwarded here."""
        return super()._suggest_from_define_by_run_func(func, ot_trial)  # type: ignore[misc]

    def _suggest_from_define_by_run_func(self, func, ot_trial) -> dict:
        return self.config_from_define_by_run(func, ot_trial)


# ----------------------------------------------------------------------------- ASHA

class ASHAHooks:
    """Public names for Ray's ASHAScheduler state that a subclass extends (mixed in before it)."""

    @property
    def brackets(self) -> list:
        return self._brackets

    @property
    def reduction_factor(self) -> float:
        return self._reduction_factor

    @property
    def max_t(self) -> int:
        return self._max_t

    @property
    def mode(self) -> str | None:
        return self._mode

    @property
    def metric_op(self) -> float | None:
        """1.0 to maximise, -1.0 to minimise, None until a metric and mode are set."""
        return self._metric_op

    @staticmethod
    def early_stopping_steps(bracket) -> list[int]:
        """The steps at which a bracket's rungs stop trials (its milestones)."""
        return [step for step, _ in bracket._rungs]

    def assign_bracket(self, trial_id: str, bracket) -> None:
        self._trial_info[trial_id] = bracket


# ----------------------------------------------------------------------------- trackers

class MLflowRunsByTrial:
    """The MLflow run of each trial that Ray's MLflowLoggerCallback keeps (mixed in before it)."""

    def run_id_of(self, trial) -> str | None:
        return self._trial_runs.get(trial)

    def set_run_id(self, trial, run_id: str) -> None:
        self._trial_runs[trial] = run_id


def wandb_classes():
    """(logging actor, callback) bases for a W&B tracker on Ray's integration: Ray's per-trial logging
    actor and its queue are private; these give them public names. Imported only with W&B."""
    from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor

    class WandbLoggingActor(_WandbLoggingActor):
        def handle_result(self, result: dict) -> tuple[dict, dict]:
            """(metrics to log, config to update) from one queued result; Ray's split by default."""
            return super()._handle_result(result)

        def _handle_result(self, result: dict) -> tuple[dict, dict]:
            return self.handle_result(result)

        @property
        def wandb_run(self):
            return self._wandb.run

    class WandbCallback(WandbLoggerCallback):
        logging_actor_class = WandbLoggingActor

        @property
        def _logger_actor_cls(self):  # Ray starts each trial's actor from this class
            return self.logging_actor_class

        def has_logging_actor(self, trial) -> bool:
            return trial in self._trial_logging_futures

        def start_logging_actor(self, trial, **kwargs) -> None:
            self._start_logging_actor(trial, **kwargs)

        def send_to_actor(self, trial, item: dict) -> bool:
            """Queue `item` as a result for the trial's actor; False if it has none."""
            queue = self._trial_queues.get(trial)
            if queue is None:
                return False
            queue.put((_QueueItem.RESULT, item))
            return True

    return WandbLoggingActor, WandbCallback


# ----------------------------------------------------------------------------- trial files

def trial_staging(trial) -> tuple[str | None, object, str]:
    """(the driver's staging folder of a trial's result files, the storage filesystem, the trial's
    folder in it). Ray's driver writes result.json, progress.csv and params there and copies the
    folder into the storage only with its experiment snapshot, every ~10 s."""
    return trial.local_path, trial.storage.storage_filesystem, trial.path


def experiment_staging(trial) -> tuple[str, object, str]:
    """(the driver's staging folder of the experiment snapshot, the storage filesystem, the
    experiment's folder in it), found through any trial of the experiment. Ray writes its snapshot
    (experiment state, searcher, generator) there, then copies the folder into the storage."""
    storage = trial.storage
    return storage.experiment_driver_staging_path, storage.storage_filesystem, storage.experiment_fs_path


def upload_folder(local: str, filesystem, path: str) -> None:
    """Copy a local folder into (filesystem, path) as Ray's own sync does (its private upload helper)."""
    from ray.train._internal.storage import _upload_to_fs_path

    _upload_to_fs_path(local, filesystem, path)


def live_trial_sets(generator_state: dict) -> list[set]:
    """The sets of trial ids that a saved search generator's state counts against its concurrency
    limit: Ray's random search (BasicVariantGenerator, `_live_trials`) and the ConcurrencyLimiter
    that Tune wraps around a searcher (saved in the search generator's state under its class name).
    A slot is freed only when the driver tells it the trial ended."""
    sets = []
    if isinstance(generator_state.get("_live_trials"), set):
        sets.append(generator_state["_live_trials"])
    limiter = generator_state.get("name:ConcurrencyLimiter")
    if isinstance(limiter, dict) and isinstance(limiter.get("live_trials"), set):
        sets.append(limiter["live_trials"])
    return sets


def set_unfinished_live_count(generator_state: dict) -> None:
    """Keep the ConcurrencyLimiter's count of unfinished live trials (batch mode) equal to its set."""
    limiter = generator_state.get("name:ConcurrencyLimiter")
    if isinstance(limiter, dict) and "num_unfinished_live_trials" in limiter:
        limiter["num_unfinished_live_trials"] = len(limiter.get("live_trials", ()))


def trial_entry_like(template: tuple[str, str], trial_id: str, config: dict, dirname: str, rows: list[dict],
                     checkpoint: str | None, ended: bool) -> tuple[str, str]:
    """An entry of Ray's experiment state for a trial Ray never recorded, shaped like `template`
    (another trial of the same experiment: its trainable, storage, resources, stopping criterion,
    retries and checkpoint settings), written in the folder `dirname` with `config`, then given
    `rows` and `checkpoint` as `trial_entry_as_ended` gives them (ended, or to continue). Ray's Trial constructor and codec build it; the
    checkpoint settings have no public getter."""
    import json

    from ray.tune.experiment import Trial

    like = Trial.from_json_state(template[0], stub=True)
    trial = Trial(like.trainable_name, config=config, trial_id=trial_id, storage=like.storage,
                  evaluated_params=dict(config), experiment_tag=f"{trial_id}_recovered",
                  stopping_criterion=like.stopping_criterion,
                  max_failures=like.max_failures, stub=True,
                  checkpoint_config=like.run_metadata.checkpoint_manager._checkpoint_config)
    # The resources Ray resolved for the template (from the trainable's default request), as
    # Ray resolves them before it first starts a trial; given to the constructor, Ray would take
    # them for a user's `resources_per_trial` and refuse them on restore.
    trial.placement_group_factory = like.placement_group_factory
    trial.relative_logdir = trial.custom_dirname = dirname
    trial.storage.trial_dir_name = dirname
    trial.stub = json.loads(template[0]).get("stub", False)  # as the driver wrote the template (read as a stub)
    trial.invalidate_json_state()
    return trial_entry_as_ended(trial.get_json_state(), rows, checkpoint, ended)


def driver_staging_folder(session_dir: str, trial_json: str) -> tuple[str, str]:
    """(the driver staging folder in Ray session `session_dir` of the run that wrote `trial_json`,
    one trial of Ray's experiment state; the experiment folder that run wrote to). Ray's driver
    writes result files in `SESSION/artifacts/TIMESTAMP/NAME/driver_artifacts` (TIMESTAMP the
    driver's, kept in each trial's storage context and reused by a restored run) and copies them
    to the storage every ~10 s. The layout and the timestamp are private."""
    import os

    from ray.tune.experiment import Trial

    storage = Trial.from_json_state(trial_json, stub=True).storage
    staging = os.path.join(session_dir, "artifacts", storage._timestamp, storage.experiment_dir_name,
                           "driver_artifacts")
    return staging, storage.experiment_fs_path


def optuna_study_of(optuna_search):
    """The Optuna study inside one of Ray's OptunaSearch objects (tunelab's subclass names it
    `optuna_study`; Ray's own keeps it private). For the scale benchmark's prefilled history."""
    return optuna_search._ot_study


def optuna_space_of(optuna_search):
    """The space one of Ray's OptunaSearch objects samples (a dict of distributions or a
    define-by-run callable); Ray keeps it private."""
    return optuna_search._space
