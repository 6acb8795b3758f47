"""What a search leaves for its readers: the experiment record (`tunelab.json`) written before the
first trial, and the summary (printed, and each trial's final status added to the record) after
`fit` returns."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.core.ranking import rank_trials
from tunelab.core.record import (FINAL_STATUSES, FORMAT, ExperimentRecord, ResourcesRecord, SchedulerRecord,
                                 SearchRecord, write_record)
from tunelab.core.storage import join_uri
from tunelab.core.redaction import redact_all
from tunelab.budget import budget_was_spent, session_deadline
from tunelab.core.statuses import UNFINISHED_RAY_STATUSES, TrialStatus, status_from
from tunelab.core.trial_folders import parse_trial_folder_name
from tunelab.provenance import environment_record
from tunelab.search_spaces.base import SearchSpace, describe
from tunelab.searchers.common import startup_trials
from tunelab.trainables import METHOD_CLASSES, get_method
from tunelab.core import metrics as M
from tunelab.trainables.config import build_config, to_dict
from tunelab.tune_options import TuneOptions


def experiment_record(opts: TuneOptions, name: str, path: str, fixed: dict[str, Any], space: SearchSpace,
                      argv: list[str] | None) -> dict[str, Any]:
    method = get_method(opts.method)
    defaults = to_dict(build_config(method.config_class, {}))
    record = ExperimentRecord(
        format=FORMAT, method=opts.method, dataset=fixed.get("dataset", defaults["dataset"]), experiment=path,
        name=name, metric=opts.metric, mode=opts.mode, options={**opts.__dict__, "name": name}, fixed=fixed,
        search_space=describe(space),
        search=SearchRecord(algorithm=opts.search, seed=opts.seed, startup_trials=startup_trials(opts),
                            optuna_storage=opts.optuna_storage),
        scheduler=SchedulerRecord(kind=opts.scheduler, time_attr=M.EPOCH, max_t=opts.max_epochs,
                                  grace_period=opts.grace_period, reduction_factor=opts.reduction_factor),
        resources=ResourcesRecord(cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=opts.gpus_per_trial,
                                  threads_per_trial=fixed.get("threads")),
        config_defaults=defaults, command=["tunelab", *(argv or [])], **environment_record())
    # the record is also what trackers tag runs with and summaries print: no password in it
    return redact_all(record.to_json())


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
