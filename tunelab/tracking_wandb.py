"""`--wandb PROJECT`: every trial as a Weights & Biases run, through Ray Tune's own W&B integration.

Ray's `WandbLoggerCallback` starts one logging actor per trial (on the driver's node) that owns the
W&B run; tunelab's subclass changes what a W&B user needs, the same way as for MLflow
(tunelab/tracking.py): the run's config is the trial's full resolved config plus a `tunelab` entry
(experiment, Ray trial id, trial folder, method, dataset), only the CONTRACT metrics are logged with
the epoch as the W&B step, the runs of one experiment form one W&B group named after it, and each
run ends with its tunelab status in the summary and the tags.

The W&B mode is W&B's own `WANDB_MODE` (online when unset), read on the driver and passed to every
run, so a cluster's workers need no environment of their own. Offline runs of an experiment on
local storage are written under EXPERIMENT/wandb/ for a later `wandb sync`. W&B is an optional
extra; this module is imported only when --wandb is given (after `check_wandb`).
"""
from __future__ import annotations

import netrc
import os
from typing import Any
from urllib.parse import urlparse

from tunelab.compat.ray import wandb_classes
from tunelab.tracking import contract_metrics, final_status, resolved_config, trial_folder
from tunelab.core import metrics as M
from tunelab.core.errors import ConfigError

INSTALL = "pip install -e '.[wandb]'"
MODES = ("online", "offline", "disabled")
# W&B refuses these in project names (and names over 128 characters).
FORBIDDEN_IN_PROJECT = set('/\\#?%:')
STATUS_KEY = "tunelab/status"  # a queue item carrying the trial's final status, never logged as a metric
WandbLoggingActor, WandbCallback = wandb_classes()


def wandb_mode() -> str:
    return os.environ.get("WANDB_MODE", "online") or "online"


def has_login() -> bool:
    """An API key W&B will find: WANDB_API_KEY, or the ~/.netrc entry `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_wandb(project: str | None) -> None:
    """Refuse --wandb before anything starts: a bad project name, W&B not installed, an unknown
    WANDB_MODE, or online mode without a login (the trials' logging actors would fail one by one)."""
    if project is None:
        return
    bad = sorted(FORBIDDEN_IN_PROJECT & set(project))
    if not project.strip() or bad or len(project) > 128:
        raise ConfigError(f"--wandb {project!r} is not a valid W&B project name; use 1-128 characters "
                          f"without any of {' '.join(sorted(FORBIDDEN_IN_PROJECT))}")
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError(f"--wandb {project!r} needs Weights & Biases, an optional extra: {INSTALL}") from None
    mode = wandb_mode()
    if mode not in MODES:
        raise ConfigError(f"WANDB_MODE={mode!r} is not valid for --wandb; choose from: {', '.join(MODES)}")
    if mode == "online" and not has_login():
        raise ConfigError(f"--wandb {project!r} sends runs to W&B but no login was found (run `wandb login` "
                          "or set WANDB_API_KEY); WANDB_MODE=offline keeps the runs on disk for `wandb sync`")


class TunelabWandbActor(WandbLoggingActor):
    """Ray's logging actor, plus the final status: a queue item {STATUS_KEY: status} goes to the
    run's summary and tags instead of its history."""

    def handle_result(self, result: dict) -> tuple[dict, dict]:
        status = result.get(STATUS_KEY)
        if status is None:
            return super().handle_result(result)
        run = self.wandb_run
        run.summary["status"] = status
        run.tags = (*run.tags, status)
        return {}, {}  # W&B adds no history row for an empty log


class TunelabWandbCallback(WandbCallback):
    logging_actor_class = TunelabWandbActor

    def __init__(self, project: str, record: dict[str, Any], run_dir: str | None):
        init_kwargs: dict[str, Any] = {"mode": wandb_mode(), "tags": [record["method"], record["dataset"]]}
        if run_dir is not None:
            init_kwargs["dir"] = run_dir
        super().__init__(project=project, group=record["name"], **init_kwargs)
        self.method, self.max_t = record["method"], int(record["scheduler"]["max_t"])
        self.about = {k: record[k] for k in ("experiment", "method", "dataset")}

    def log_trial_start(self, trial) -> None:
        if self.has_logging_actor(trial):  # a restarted trial keeps its run
            return
        folder = trial_folder(trial)
        config = {**resolved_config(self.method, trial),
                  "tunelab": {**self.about, "ray_trial_id": trial.trial_id, "trial_dir": folder}}
        # resume="allow": `tunelab resume` continues the same run; W&B drops the epochs it already
        # has (their steps are not above its last), so a restarted trial's repeated epochs log once.
        self.start_logging_actor(trial, exclude_results=[], id=trial.trial_id, name=folder, resume="allow",
                                  allow_val_change=True, group=self.group, project=self.project,
                                  config=config, **self.kwargs)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        metrics = contract_metrics(result)
        # Ray's actor logs at step=result["training_iteration"]; make that the epoch.
        metrics["training_iteration"] = int(result.get(M.EPOCH, iteration))
        super().log_trial_result(iteration, trial, metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        self.send_to_actor(trial, {STATUS_KEY: final_status(trial, failed, self.max_t)})
        super().log_trial_end(trial, failed)
