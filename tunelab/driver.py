"""Assembles and runs a Ray Tune experiment for one method: `tunelab tune` and `tunelab resume`.

The method's trainable comes from `trainables.METHODS`, its search space from `search_spaces`
(with --space overrides), fixed values from --set. The in-memory dataset is loaded once here
and shared with every trial through the object store (`tune.with_parameters`); resources per
trial go through `tune.with_resources`. Everything a later `resume`, `report` or `best` needs is
recorded in `tunelab.json` at the experiment root.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.load import FINAL_STATUSES, TUNELAB_FILE, status_from
from analysis.load import read_record as read_local_record
from search_spaces import SPACES
from search_spaces.base import Choice, IntRange, SearchSpace, describe
from search_spaces.overrides import apply_overrides, load_space_file
from trainables import METHOD_CLASSES, METHODS, get_method
from trainables import metrics as M
from trainables.config import build_config, parse_set_options, to_dict
from trainables.errors import ConfigError
from tunelab.provenance import environment_record

DEFAULT_STORAGE = "./runs"
SEARCHES = ("optuna", "random")
SCHEDULERS = ("asha", "fifo")


@dataclass
class TuneOptions:
    method: str
    dataset: str | None = None
    data_dir: str | None = None
    num_samples: int = 8
    search: str = "optuna"
    scheduler: str = "asha"
    max_epochs: int = 4
    grace_period: int = 1
    reduction_factor: int = 3
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0  # 0: as many as resources allow
    storage: str = DEFAULT_STORAGE
    name: str | None = None
    address: str | None = None
    space: str | None = None
    seed: int = 0
    sets: list[str] = field(default_factory=list)
    optuna_storage: str | None = None
    max_failures: int = 1
    startup_trials: int = 0  # 0: min(10, max(2, num_samples // 4))
    overwrite: bool = False
    checkpoint_interval_s: float = 60.0  # a trial checkpoints at most this often, and at its last epoch
    stop_at: float | None = None  # end the whole search once a trial's metric reaches this
    tensorboard: bool = False
    metric: str = M.VAL_ACC
    mode: str = "max"


# ----------------------------------------------------------------------------- validation

def _check(opts: TuneOptions) -> None:
    if opts.method not in METHOD_CLASSES:
        raise ConfigError(f"method={opts.method!r} is not known; choose from: {', '.join(METHOD_CLASSES)}")
    if opts.search not in SEARCHES:
        raise ConfigError(f"--search {opts.search!r} is not valid; choose from: {', '.join(SEARCHES)}")
    if opts.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler {opts.scheduler!r} is not valid; choose from: {', '.join(SCHEDULERS)}")
    for name, value, low in (("--num-samples", opts.num_samples, 1), ("--max-epochs", opts.max_epochs, 1),
                             ("--grace-period", opts.grace_period, 1), ("--reduction-factor", opts.reduction_factor, 2),
                             ("--max-concurrent", opts.max_concurrent, 0), ("--max-failures", opts.max_failures, 0)):
        if value < low:
            raise ConfigError(f"{name} {value} is out of range; allowed: >= {low}")
    if opts.checkpoint_interval_s < 0:
        raise ConfigError(f"--checkpoint-interval {opts.checkpoint_interval_s:g} is out of range; "
                          "allowed: >= 0 (0 = every epoch)")
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
    if values.get("device") == "cpu":
        values.pop("gpu_memory_fraction", None)
    return values


def resolve_space(opts: TuneOptions, fixed: dict[str, Any]) -> SearchSpace:
    config_class = METHOD_CLASSES[opts.method].config_class
    space = dict(SPACES[opts.method])
    if opts.space:
        space = apply_overrides(space, load_space_file(opts.space), config_class)
    for key in fixed:  # a value fixed with --set is not searched
        space.pop(key, None)
    if not space:
        raise ConfigError("the search space is empty (every entry was fixed or dropped); nothing to tune")
    return space


def startup_trials(opts: TuneOptions) -> int:
    """Random trials before TPE models the space: a quarter of the budget, between 2 and 10."""
    return opts.startup_trials or min(10, max(2, opts.num_samples // 4))


# ----------------------------------------------------------------------------- storage and Ray

def is_uri(storage: str) -> bool:
    return "://" in storage


def experiment_path(storage: str, name: str) -> str:
    if is_uri(storage):
        return storage.rstrip("/") + "/" + name
    return str(Path(os.path.expanduser(storage)).resolve() / name)


def _local_path(path: str) -> Path | None:
    if path.startswith("file://"):
        return Path(path[len("file://"):])
    return None if is_uri(path) else Path(path)


def prepare_experiment_folder(path: str, overwrite: bool) -> None:
    local = _local_path(path)
    if local is None:
        return
    if local.exists() and any(local.iterdir()):
        if not overwrite:
            raise ConfigError(f"experiment {str(local)!r} already exists; continue it with `tunelab resume {local}`, "
                              "pick another --name, or pass --overwrite to replace it")
        shutil.rmtree(local)
    try:
        local.mkdir(parents=True, exist_ok=True)
        probe = local / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--storage {str(local.parent)!r} is not writable: {exc.strerror}") from None


def connect_ray(address: str | None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS), else start a local instance (dashboard off)."""
    import ray

    # Forced snapshots (num_to_keep) are expected here; Ray's warning about them is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's own tables and banners stay off stdout; tunelab prints its concise lines instead.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(include_dashboard=False, dashboard_host="127.0.0.1", **quiet)
    except ConnectionError as exc:
        raise ConfigError(f"--address {address!r}: no Ray cluster answered ({str(exc).splitlines()[0]})") from None


def allow_parallel_pending_trials(opts: TuneOptions) -> None:
    """Let Tune queue as many trials as can run at once.

    With any searcher but its own random one, Tune keeps a single pending trial by default, so
    trials start one after another and an idle CPU waits for the next suggestion; the Optuna
    sampler's constant liar is what makes parallel suggestions safe.
    """
    import ray

    slots = int(ray.cluster_resources().get("CPU", 1) // opts.cpus_per_trial)
    if opts.gpus_per_trial > 0:
        slots = min(slots, int(ray.cluster_resources().get("GPU", 0) // opts.gpus_per_trial))
    if opts.max_concurrent:
        slots = min(slots, opts.max_concurrent)
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(1, slots))


def check_cluster(opts: TuneOptions, storage: str) -> None:
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if opts.gpus_per_trial > 0 and gpus < opts.gpus_per_trial:
        raise ConfigError(f"--gpus-per-trial {opts.gpus_per_trial:g} but the Ray cluster has {gpus:g} GPUs; "
                          "use --gpus-per-trial 0 or connect to a cluster with GPUs (--address)")
    if opts.cpus_per_trial > ray.cluster_resources().get("CPU", 0):
        raise ConfigError(f"--cpus-per-trial {opts.cpus_per_trial:g} is more than the cluster's "
                          f"{ray.cluster_resources().get('CPU', 0):g} CPUs")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and not is_uri(storage):
        raise ConfigError(f"--storage {storage!r} is a local path but the cluster has {len(nodes)} nodes; use storage "
                          "every node can reach (e.g. s3://bucket/runs, or file:///mnt/shared/runs on a shared mount)")


# ----------------------------------------------------------------------------- assembly

def build_trainable(opts: TuneOptions, data):
    from ray import tune

    trainable = tune.with_parameters(METHODS[opts.method], data=data,
                                     checkpoint_interval_s=opts.checkpoint_interval_s)
    return tune.with_resources(trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})


def tune_domains(space: SearchSpace) -> dict[str, Any]:
    """The space as Ray Tune domains, for random search."""
    from ray import tune

    out = {}
    for name, p in space.items():
        if isinstance(p, Choice):
            out[name] = tune.choice(list(p.options))
        elif isinstance(p, IntRange):
            out[name] = tune.lograndint(p.low, p.high + 1) if p.log else tune.randint(p.low, p.high + 1)
        else:
            out[name] = tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    return out


def build_search(opts: TuneOptions, space: SearchSpace, name: str):
    """(search algorithm, param_space entries it does not sample itself)."""
    if opts.search == "optuna":
        import optuna

        from tunelab.searcher import MultiFidelityOptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        searcher = MultiFidelityOptunaSearch(space, opts.metric, opts.mode, max_t=opts.max_epochs, seed=opts.seed,
                                             n_startup_trials=startup_trials(opts), storage=opts.optuna_storage,
                                             study_name=name)
        return searcher, {}
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Tune ignores TuneConfig.max_concurrent_trials for a generator instance; it takes it here.
    return (BasicVariantGenerator(random_state=opts.seed, max_concurrent=opts.max_concurrent),
            tune_domains(space))


def build_scheduler(opts: TuneOptions):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if opts.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr=M.EPOCH, metric=opts.metric, mode=opts.mode, max_t=opts.max_epochs,
                         grace_period=min(opts.grace_period, opts.max_epochs),
                         reduction_factor=opts.reduction_factor)


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


def run_config(opts: TuneOptions, name: str, storage: str):
    from ray import tune

    from tunelab.progress import ProgressLines
    from tunelab.stopping import StopWhenReached

    stop = StopWhenReached(opts.metric, opts.mode, opts.stop_at) if opts.stop_at is not None else None
    return tune.RunConfig(
        name=name, storage_path=storage, verbose=0, stop=stop,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=opts.metric,
                                                checkpoint_score_order=opts.mode),
        callbacks=[ProgressLines(opts.num_samples, opts.metric, opts.max_epochs),
                   *logger_callbacks(opts.tensorboard)])


def load_shared_data(method: str, fixed: dict[str, Any]):
    """Load the dataset once (bad paths fail here, before Ray starts) and pretrain `auto` backbones once."""
    from trainables.data import load_dataset

    config = build_config(METHOD_CLASSES[method].config_class, fixed)
    if getattr(config, "pretrained", None) == "auto":
        from trainables.pretrained import ensure_auto_backbone

        fixed["pretrained"] = str(ensure_auto_backbone(config, stream=sys.stderr))
    return load_dataset(config.data_options())


def trial_dirname(trial) -> str:
    """Short, stable folder names (Ray's default packs the whole config into the name)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def default_name(opts: TuneOptions) -> str:
    dataset = (opts.dataset or "digits").split(":")[0]
    return f"{opts.method}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_tune(opts: TuneOptions, argv: list[str] | None = None) -> dict[str, Any]:
    """Run a search; returns the summary (`experiment`, `trials`, `best_config`, `best_metric`, ...)."""
    _check(opts)
    fixed = fixed_values(opts)
    build_config(METHOD_CLASSES[opts.method].config_class, fixed)  # bad --set fails before anything starts
    space = resolve_space(opts, fixed)
    name = opts.name or default_name(opts)
    storage = opts.storage if is_uri(opts.storage) else str(Path(os.path.expanduser(opts.storage)).resolve())
    path = experiment_path(storage, name)
    prepare_experiment_folder(path, opts.overwrite)
    data = load_shared_data(opts.method, fixed)
    connect_ray(opts.address)
    check_cluster(opts, storage)
    allow_parallel_pending_trials(opts)

    from ray import tune

    search_alg, sampled = build_search(opts, space, name)
    record = experiment_record(opts, name, path, fixed, space, argv)
    write_record(path, record)
    tuner = tune.Tuner(
        build_trainable(opts, data),
        param_space={**fixed, **sampled},
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=build_scheduler(opts),
                                    num_samples=opts.num_samples,
                                    max_concurrent_trials=opts.max_concurrent or None,
                                    # a finished trial's worker process (torch imported, data mapped)
                                    # takes the next trial instead of a fresh actor starting up
                                    reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=run_config(opts, name, storage),
    )
    return finish(tuner.fit(), record, path)


def resume(path: str, resume_errored: bool = False, restart_errored: bool = False,
           address: str | None = None) -> dict[str, Any]:
    """Continue an interrupted experiment: unfinished trials resume from their checkpoints."""
    record = read_record(path)
    opts = TuneOptions(**record["options"])
    from ray import tune

    if not tune.Tuner.can_restore(path):
        raise ConfigError(f"{path!r} has a {TUNELAB_FILE} but no Ray Tune state to restore from "
                          "(the driver stopped before the first trial started); start it again with `tunelab tune`")
    data = load_shared_data(opts.method, dict(record["fixed"]))
    connect_ray(address or opts.address)
    if record.pop(FINAL_STATUSES, None) is not None:
        write_record(path, record)  # trials about to run again are no longer final
    allow_parallel_pending_trials(opts)
    if "tensorboard" in record["options"]:
        # The restored run config brings tunelab's own loggers; experiments made before they were
        # passed explicitly still rely on Tune's defaults.
        keep_default_loggers_off()
    tuner = tune.Tuner.restore(path, trainable=build_trainable(opts, data),
                               resume_unfinished=True, resume_errored=resume_errored, restart_errored=restart_errored)
    return finish(tuner.fit(), record, path)


# ----------------------------------------------------------------------------- records and summaries

def experiment_record(opts: TuneOptions, name: str, path: str, fixed: dict[str, Any], space: SearchSpace,
                      argv: list[str] | None) -> dict[str, Any]:
    method = get_method(opts.method)
    defaults = to_dict(build_config(method.config_class, {}))
    return {
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
    }


def write_record(path: str, record: dict[str, Any]) -> None:
    from trainables.reporting import atomic_write_text

    text = json.dumps(record, indent=2, sort_keys=False, default=str)
    local = _local_path(path)
    if local is not None:
        atomic_write_text(local / TUNELAB_FILE, text)
        return
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(path)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{TUNELAB_FILE}") as handle:
        handle.write(text.encode("utf-8"))


def read_record(path: str) -> dict[str, Any]:
    local = _local_path(path)
    if local is not None:
        return read_local_record(local)
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(path)
        with fs.open_input_stream(f"{root}/{TUNELAB_FILE}") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        raise ConfigError(f"{path!r} is not a tunelab experiment (no readable {TUNELAB_FILE}); "
                          "pass a folder made by `tunelab tune`, e.g. runs/NAME") from None


def finish(grid, record: dict[str, Any], path: str) -> dict[str, Any]:
    """Record every trial's final status in tunelab.json, then summarise.

    Ray's experiment snapshot can still be on its way to the storage when `fit` returns (its last
    sync is skipped while an earlier one runs), so a reader could see a retried trial as errored;
    the driver's own view of the finished grid is written where analysis looks first.
    """
    summary = summarise(grid, record)
    write_record(path, {**record, FINAL_STATUSES: summary.pop("trial_statuses")})
    return summary


def summarise(grid, record: dict[str, Any]) -> dict[str, Any]:
    metric, mode = record["metric"], record["mode"]
    config_class = METHOD_CLASSES[record["method"]].config_class
    max_epochs = record["scheduler"]["max_t"]
    best_value, best_config, best_trial = None, None, None
    statuses: dict[str, int] = {}
    trial_statuses: dict[str, str] = {}
    for result in grid:
        frame = result.metrics_dataframe
        last = result.metrics or {}
        status = status_from(int(last.get(M.EPOCH, 0)), bool(last.get(M.DIVERGED)), result.error is not None,
                             max_epochs)
        statuses[status] = statuses.get(status, 0) + 1
        # Folders are named METHOD_TRIALID (trial_dirname); a trial that never reported has no trial_id.
        trial_statuses[str(last.get("trial_id") or Path(result.path).name.rsplit("_", 1)[-1])] = status
        if frame is None or metric not in frame or frame[metric].dropna().empty:
            continue
        values = frame[metric].dropna()
        value = float(values.max() if mode == "max" else values.min())
        better = best_value is None or (value > best_value if mode == "max" else value < best_value)
        if math.isfinite(value) and better:
            best_value, best_trial = value, last.get("trial_id")
            best_config = to_dict(build_config(config_class, result.config))
    return {"experiment": record["experiment"], "method": record["method"], "dataset": record["dataset"],
            "trials": len(grid), "statuses": statuses, "trial_statuses": trial_statuses,
            "best_trial": best_trial, "best_metric": best_value,
            "metric": metric, "best_config": best_config}

