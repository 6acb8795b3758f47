"""The tracker contract: every registered tracker (tunelab.tracker_plugins.REGISTERED) declares its
option, extra and check, and logs a tiny real search that its own library reads back: one run per
trial, named by the trial's Ray id, with the full resolved config, one metric row per epoch (the
epoch as the step) and the trial's tunelab status."""
from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest

from tests.tunelab.test_tracking_ray import wandb_run
from tunelab.core.trial_folders import parse_trial_folder_name
from tunelab.driver import run_tune
from tunelab.tracker_plugins import REGISTERED, tracker_for
from tunelab.core.errors import ConfigError
from tunelab.tune_options import TuneOptions

ROOT = Path(__file__).resolve().parents[2]
TINY = ["image_size=8", "width=8", "batch_size=128"]


def _mlflow_value(tmp_path: Path, monkeypatch) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _mlflow_runs(value: str, tmp_path: Path, experiment: str) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(value)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [{"trial_id": run.data.tags["ray_trial_id"], "status": run.data.tags["status"],
             "config": run.data.params,
             "steps": [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]} for run in runs]


def _wandb_value(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return "tunelab-contract"


def _wandb_runs(value: str, tmp_path: Path, experiment: str) -> list[dict]:
    runs = [wandb_run(p) for p in sorted((tmp_path / experiment / "wandb").glob("offline-run-*/run-*.wandb"))]
    # "cut": the run file stops before the summary tunelab writes last (the status)
    return [{"trial_id": run.get("id"), "status": run["summary"].get("status"), "config": run["config"],
             "steps": sorted(run["history"]), "cut": "status" not in run["summary"]} for run in runs]


# Each tracker's (value for a tiny local run, reader of its runs with the tracker's own library).
READERS = {"mlflow": (_mlflow_value, _mlflow_runs), "wandb": (_wandb_value, _wandb_runs)}


def test_every_registered_tracker_has_a_reader_here():
    assert set(READERS) == set(REGISTERED), "a tracker without a read-back in its contract test"


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_a_tracker_declares_its_option_extra_and_folders(name):
    tracker = tracker_for(name)
    assert tracker.name == name
    assert tracker.option.default is None and tracker.option.metadata["help"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert tracker.extra in extras, f"--{name}'s extra {tracker.extra!r} is not declared"
    assert f"'.[{tracker.extra}]'" in tracker.option.metadata["help"]  # the help says how to install it
    assert all(isinstance(p, tuple) and p for p in tracker.folders_in_experiment.values())
    assert name in TuneOptions.__dataclass_fields__


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_an_empty_value_is_refused_naming_the_option(name):
    with pytest.raises(ConfigError, match=f"--{name} ''"):
        tracker_for(name).check("")


@pytest.mark.ray
@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_a_tiny_search_reads_back_through_the_trackers_own_library(name, ray_cluster, tmp_path, monkeypatch):
    make_value, read = READERS[name]
    value = make_value(tmp_path, monkeypatch)
    for experiment in ("tracked", "tracked-again"):
        summary = run_tune(TuneOptions(method="classifier", num_samples=2, max_epochs=2, scheduler="fifo",
                                       storage=f"file://{tmp_path}", name=experiment, sets=TINY, **{name: value}))
        trials = [parse_trial_folder_name(p.name, "classifier")[1] for p in (tmp_path / experiment).glob("classifier_*")]
        runs = read(value, tmp_path, experiment)
        cut = [run["trial_id"] for run in runs if run.get("cut")]
        if name != "wandb" or not cut or experiment == "tracked-again":
            break
        # The known W&B defect (docs/how-to/trackers.md; test_tracking_ray): on a loaded machine a
        # logging actor can stop before its run file is whole. Once more, said; twice fails.
        warnings.warn(f"W&B offline run(s) {cut} were cut short (the known logging-actor shutdown race); "
                      "running the search once more", stacklevel=1)
    assert not [run["trial_id"] for run in runs if run.get("cut")], "W&B offline runs cut short, twice"
    assert sorted(run["trial_id"] for run in runs) == sorted(trials)
    for run in runs:
        assert run["status"] == "finished"
        assert str(run["config"]["width"]) == "8" and "label_smoothing" in run["config"]  # the full config
        assert run["steps"] == [1, 2]
    assert summary["statuses"] == {"finished": 2}
