"""--mlflow in a real (tiny) search, read back through MLflow's own client."""
import sys

import pytest

from trainables.errors import ConfigError
from tunelab.driver import TuneOptions, run_tune

TINY = ["image_size=8", "width=8", "batch_size=128"]


@pytest.mark.ray
def test_every_trial_is_an_mlflow_run_with_full_config_epoch_metrics_and_status(ray_cluster, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = run_tune(TuneOptions(method="classifier", num_samples=3, max_epochs=3, reduction_factor=2,
                                   storage=f"file://{tmp_path}", name="tracked", sets=TINY, mlflow=uri))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    statuses = {}
    for run in runs:
        tags, params = run.data.tags, run.data.params
        assert tags["method"] == "classifier" and tags["dataset"] == "digits"
        assert tags["experiment"] == summary["experiment"] and tags["trial_dir"] == f"classifier_{tags['ray_trial_id']}"
        assert params["model"] == "small_cnn" and params["width"] == "8" and "label_smoothing" in params  # all keys
        history = client.get_metric_history(run.info.run_id, "val/acc")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        statuses[tags["ray_trial_id"]] = tags["status"]
    assert sorted(statuses.values()) == sorted(
        s for s, n in summary["statuses"].items() for _ in range(n))


def test_mlflow_without_the_extra_is_refused_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"--mlflow 'sqlite:///m.db' needs MLflow, an optional extra: "
                                          r"pip install -e '.\[mlflow\]'"):
        run_tune(TuneOptions(method="classifier", storage=str(tmp_path / "runs"), mlflow="sqlite:///m.db"))
    assert not (tmp_path / "runs").exists()
