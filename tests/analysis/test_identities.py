"""`tunelab report A A' ...`: one experiment given twice, under any spelling, counts once."""
import json
from pathlib import Path

import pandas as pd
import pytest

from tunelab.analysis.load import TUNELAB_FILE, load_experiments, unique_experiments
from tunelab.cli import main


def _experiment(folder: Path, trials: int = 2) -> Path:
    """An experiment in Ray Tune's layout as the driver leaves it: tunelab.json and one folder per trial."""
    folder.mkdir(parents=True)
    record = {"format": 1, "method": "classifier", "dataset": "digits", "experiment": str(folder), "name": folder.name,
              "metric": "val/acc", "mode": "max", "options": {"method": "classifier"}, "fixed": {},
              "search_space": [], "search": {"algorithm": "optuna", "seed": 0},
              "scheduler": {"kind": "asha", "time_attr": "epoch", "max_t": 2, "grace_period": 1,
                            "reduction_factor": 3},
              "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0}, "config_defaults": {}, "command": [],
              "final_statuses": {f"t{i}": "finished" for i in range(trials)}}
    (folder / TUNELAB_FILE).write_text(json.dumps(record))
    for i in range(trials):
        trial = folder / f"classifier_t{i}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"lr": 0.001 * (i + 1)}))
        (trial / "progress.csv").write_text("epoch,val/acc,trial_id\n" +
                                            "".join(f"{e},{0.5 + 0.1 * e + 0.01 * i},t{i}\n" for e in (1, 2)))
    return folder


@pytest.fixture
def spellings(tmp_path, monkeypatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    _experiment(tmp_path / "runs" / "x")
    (tmp_path / "alias").symlink_to(tmp_path / "runs" / "x")
    return ["runs/x", "./runs/x", "runs/x/", "alias", f"file://{tmp_path}/runs/x", f"file://{tmp_path}/alias/"]


def test_spellings_of_one_experiment_are_kept_once(spellings, capsys):
    assert unique_experiments(spellings) == ["runs/x"]
    err = capsys.readouterr().err
    assert err.count("counted once") == len(spellings) - 1 and "'alias' is the experiment 'runs/x' again" in err
    frame = load_experiments(spellings)
    assert len(frame) == 4 and frame["trial_id"].nunique() == 2


def test_report_counts_an_experiment_given_twice_once(spellings, tmp_path, capsys):
    _experiment(tmp_path / "runs" / "y", trials=3)
    assert main(["report", *spellings, "runs/y", "./runs/y/", "--out", str(tmp_path / "rep")]) == 0
    trials = pd.read_csv(tmp_path / "rep" / "trial_summary.csv")
    assert sorted(trials.groupby("experiment")["trial_id"].count().tolist()) == [2, 3]
    assert len(trials) == 5  # 2 + 3, not 6 * 2 + 2 * 3
    comparison = pd.read_csv(tmp_path / "rep" / "comparison.csv")
    assert comparison["trials"].sum() == 5
