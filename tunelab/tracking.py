"""`--mlflow URI`: every trial as an MLflow run, through Ray Tune's own MLflow integration.

Ray's `MLflowLoggerCallback` creates the runs and logs each result; tunelab's subclass changes what
a user of the tracker needs: params are the trial's full resolved config (Ray logs only the values
the search passed), metrics are logged under the CONTRACT names with the epoch as the step, and
every run is tagged with method, dataset, experiment, the Ray trial id and folder, and the trial's
tunelab status when it ends (finished, stopped, diverged, errored). MLflow is an optional extra;
this module is imported only when --mlflow or --wandb is given. The helpers below are shared with
the W&B callback (tunelab/tracking_wandb.py), so both trackers show a trial the same way.
"""
from __future__ import annotations

import sys
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from tunelab.compat.ray import MLflowRunsByTrial
from tunelab.core.statuses import status_from
from tunelab.core.trial_folders import trial_folder_name
from tunelab.trainables import METHOD_CLASSES
from tunelab.core import metrics as M
from tunelab.trainables.config import build_config, to_dict
from tunelab.core.errors import ConfigError

INSTALL = "pip install -e '.[mlflow]'"


def check_mlflow(uri: str | None) -> None:
    """Refuse --mlflow when MLflow is not installed or the URI is empty, before anything starts."""
    if uri is None:
        return
    if not uri.strip():
        raise ConfigError(f"--mlflow {uri!r} is empty; give a tracking URI, e.g. sqlite:///runs/mlflow.db")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(f"--mlflow {uri!r} needs MLflow, an optional extra: {INSTALL}") from None
    from tunelab.preflight import probe_mlflow

    probe_mlflow(uri)  # a malformed or unreachable URI: one line now, not a traceback minutes later


def retire_runs(uri: str, name: str, experiment: str) -> list[str]:
    """--overwrite: mark deleted (MLflow's own soft delete, undone by `mlflow runs restore`) the runs
    of the experiment being replaced, i.e. the active runs of MLflow experiment `name` tagged with
    this experiment's location; runs of other experiments that share the name stay. Says which."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        return []
    retired, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  page_token=token)
        retired += [run.info.run_id for run in page if run.data.tags.get("experiment") == experiment]
        token = page.token
        if not token:
            break
    for run_id in retired:
        client.delete_run(run_id)
    if retired:
        print(f"tunelab: --overwrite: marked {len(retired)} MLflow run(s) of the replaced {experiment} deleted "
              f"in MLflow experiment {name!r} (mlflow runs restore --run-id ID undoes it): {', '.join(retired)}",
              file=sys.stderr)
    return retired


def trial_folder(trial) -> str:
    """The trial's folder name in the experiment, to find it on disk."""
    return trial_folder_name(trial.trainable_name, trial.trial_id)


def resolved_config(method: str, trial) -> dict[str, Any]:
    """Every config key of the trial (Ray passes on only the values the search drew)."""
    return to_dict(build_config(METHOD_CLASSES[method].config_class, trial.config))


def contract_metrics(result: dict) -> dict[str, Any]:
    """The CONTRACT metrics of one result (`val/acc`, `train/loss`, ...) and the epoch; none of
    Ray's bookkeeping (pid, hostname, time_this_iter_s, ...)."""
    return {k: v for k, v in result.items() if "/" in k or k in (M.EPOCH, M.DIVERGED)}


def final_status(trial, failed: bool, max_t: int) -> str:
    last = trial.last_result or {}
    return status_from(int(last.get(M.EPOCH, 0) or 0), bool(last.get(M.DIVERGED)), failed, max_t)


class TunelabMLflowCallback(MLflowRunsByTrial, MLflowLoggerCallback):
    def __init__(self, tracking_uri: str, record: dict[str, Any]):
        super().__init__(tracking_uri=tracking_uri, experiment_name=record["name"],
                         tags={"method": record["method"], "dataset": record["dataset"],
                               "experiment": record["experiment"]})
        self.method, self.max_t = record["method"], int(record["scheduler"]["max_t"])

    def log_trial_start(self, trial) -> None:
        if self.run_id_of(trial) is not None:
            return
        folder = trial_folder(trial)
        run = self.mlflow_util.start_run(tags={**self.tags, "ray_trial_id": trial.trial_id, "trial_dir": folder},
                                         run_name=folder)
        self.set_run_id(trial, run.info.run_id)
        self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=resolved_config(self.method, trial))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        self.mlflow_util.log_metrics(run_id=self.run_id_of(trial), metrics_to_log=contract_metrics(result),
                                     step=int(result.get(M.EPOCH, iteration)))

    def log_trial_end(self, trial, failed: bool = False) -> None:
        from mlflow import MlflowClient

        status = final_status(trial, failed, self.max_t)
        MlflowClient(self.tracking_uri).set_tag(self.run_id_of(trial), "status", status)
        super().log_trial_end(trial, failed)
