"""`report` and `best` at their edges, on a real stored experiment (tests/data/experiment-0.1.0, made
by tunelab 0.1.0): input that is no experiment is named as such before --out is judged, an
experiment whose trials never reported is refused in one line, and `best --out` never writes into
an experiment folder. Found by a hostile try-out (each was a traceback or a misleading line)."""
import json
import shutil
from pathlib import Path

import pytest

from tunelab.cli import main

EXPERIMENT_0_1_0 = Path(__file__).resolve().parents[1] / "data" / "experiment-0.1.0"


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    _run.out = captured.out
    return code, captured.err


@pytest.fixture
def experiment(tmp_path):
    copy = tmp_path / "exp"
    shutil.copytree(EXPERIMENT_0_1_0, copy)
    return copy


def test_report_names_a_folder_that_is_no_experiment_before_judging_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    code, err = _run(capsys, "report", "..", "--out", "r")
    assert code == 2 and err.count("\n") == 1 and "is not a tunelab experiment" in err and "--out" not in err


def test_report_on_a_symlink_loop_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    code, err = _run(capsys, "report", "loopA", "--out", "r")
    assert code == 2 and err.count("\n") == 1 and "loopA" in err


def test_report_on_trials_that_never_reported_is_refused_in_one_line_writing_nothing(experiment, tmp_path, capsys):
    for trial in experiment.glob("classifier_*"):
        (trial / "progress.csv").write_text("")
        (trial / "result.json").write_text("")
    code, err = _run(capsys, "report", str(experiment), "--out", str(tmp_path / "r"))
    assert code == 2 and err.count("\n") == 1 and "no trial has reported a result yet" in err
    assert not (tmp_path / "r").exists()


def test_best_out_inside_an_experiment_is_refused_and_nothing_is_written(experiment, capsys):
    before = sorted(p.name for p in experiment.rglob("*"))
    code, err = _run(capsys, "best", str(experiment), "--out", str(experiment / "best.yaml"))
    assert code == 2 and err.count("\n") == 1 and "is inside experiment" in err
    assert sorted(p.name for p in experiment.rglob("*")) == before


def test_best_out_beside_an_experiment_writes_the_record(experiment, tmp_path, capsys):
    code, _ = _run(capsys, "best", str(experiment), "--out", str(tmp_path / "best.yaml"), "--json")
    assert code == 0 and (tmp_path / "best.yaml").is_file()
    assert json.loads(_run.out.strip().splitlines()[-1])["method"] == "classifier"


def test_report_out_inside_another_experiment_is_refused(experiment, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(EXPERIMENT_0_1_0, other)
    code, err = _run(capsys, "report", str(experiment), "--out", str(other / "rep"))
    assert code == 2 and err.count("\n") == 1 and f"is inside experiment {str(other)!r}" in err
    assert not (other / "rep").exists()
