"""Result files a killed driver left in Ray's staging folder, recovered before `resume`: only from
the same run, only what the experiment lacks, never shortening or replacing what it holds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunelab.staged_files import recover_staged_trial_files


def _trial_json(storage: Path, trial_id: str) -> str:
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    context = StorageContext(storage_path=str(storage), experiment_dir_name="exp",
                             trial_dir_name=f"classifier_{trial_id}")
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    trial = Trial("classifier", config={}, trial_id=trial_id, storage=context, stub=True)
    trial.placement_group_factory = PlacementGroupFactory([{"CPU": 1}])
    return trial.get_json_state()[0]


def _previous(session: Path) -> dict:
    """The lock's record of the killed driver: this host, the Ray session it had joined."""
    import socket

    return {"host": socket.gethostname(), "pid": 1, "driver_session": str(session)}


@pytest.fixture
def laid_out(tmp_path):
    """An experiment `exp` with one trial (2 rows) and Ray's staging folder of the same run (that
    trial with 3 rows, and a second trial created after the snapshot)."""
    storage = tmp_path / "runs"
    entry = _trial_json(storage, "a1b2c3d4")
    experiment = storage / "exp"
    (experiment / "tunelab.json").write_text(json.dumps({"method": "classifier"}))
    state = {"trial_data": [[entry, "{}"]]}
    (experiment / "experiment_state-s1.json").write_text(json.dumps(state))
    from ray.tune.experiment import Trial

    stamp = Trial.from_json_state(entry, stub=True).storage._timestamp
    session = tmp_path / "ray" / "session_x"
    staging = session / "artifacts" / stamp / "exp" / "driver_artifacts"
    (staging / "classifier_a1b2c3d4").mkdir(parents=True)
    (staging / "classifier_e5f6a7b8").mkdir()
    rows = "".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3))
    (staging / "classifier_a1b2c3d4" / "result.json").write_text(rows)
    (staging / "classifier_e5f6a7b8" / "result.json").write_text(rows[:20])
    (staging / "classifier_e5f6a7b8" / "params.json").write_text("{}")
    (staging / "experiment_state-s2.json").write_text(json.dumps(
        {"trial_data": [[entry, "{}"], [_trial_json(storage, "e5f6a7b8"), "{}"]]}))
    (experiment / "classifier_a1b2c3d4").mkdir()
    (experiment / "classifier_a1b2c3d4" / "result.json").write_text(rows.split("\n", 2)[0] + "\n" + rows.split("\n")[1] + "\n")
    return experiment, staging, rows, _previous(session)


def test_the_newest_rows_and_a_trial_created_after_the_snapshot_are_copied_in(laid_out, capsys):
    experiment, staging, rows, previous = laid_out
    assert recover_staged_trial_files(str(experiment), previous) == ["classifier_a1b2c3d4", "classifier_e5f6a7b8"]
    assert (experiment / "classifier_a1b2c3d4" / "result.json").read_text() == rows
    assert (experiment / "classifier_e5f6a7b8" / "params.json").read_text() == "{}"
    assert "recovered the results of 2 trial(s)" in capsys.readouterr().err
    assert recover_staged_trial_files(str(experiment), previous) == []  # nothing more to add


def test_a_longer_or_different_file_in_the_experiment_is_never_replaced(laid_out):
    experiment, staging, rows, previous = laid_out
    longer = rows + json.dumps({"epoch": 4}) + "\n"
    (experiment / "classifier_a1b2c3d4" / "result.json").write_text(longer)
    (experiment / "classifier_e5f6a7b8").mkdir()
    (experiment / "classifier_e5f6a7b8" / "result.json").write_text("something else entirely\n")
    (experiment / "classifier_e5f6a7b8" / "params.json").write_text('{"kept": 1}')
    assert recover_staged_trial_files(str(experiment), previous) == []
    assert (experiment / "classifier_a1b2c3d4" / "result.json").read_text() == longer
    assert (experiment / "classifier_e5f6a7b8" / "result.json").read_text() == "something else entirely\n"
    assert (experiment / "classifier_e5f6a7b8" / "params.json").read_text() == '{"kept": 1}'


def test_a_staging_folder_of_another_run_or_another_copy_is_not_used(laid_out, tmp_path):
    import shutil

    experiment, staging, rows, previous = laid_out
    # a copy of the experiment elsewhere: same trial ids, same staging name, another folder
    copy = tmp_path / "elsewhere" / "exp"
    shutil.copytree(experiment, copy)
    assert recover_staged_trial_files(str(copy), previous) == []
    assert not (copy / "classifier_e5f6a7b8").exists()
    # no session recorded (a lock from before, or none), or one on another host
    assert recover_staged_trial_files(str(experiment), {"host": previous["host"]}) == []
    assert recover_staged_trial_files(str(experiment), {**previous, "host": "another-host"}) == []
    # the staging folder's state names other trials
    (staging / "experiment_state-s2.json").write_text(json.dumps({"trial_data": [[_trial_json(tmp_path / "runs", "0f0f0f0f"), "{}"]]}))
    assert recover_staged_trial_files(str(experiment), previous) == []
    assert not (experiment / "classifier_e5f6a7b8").exists()


def test_links_are_not_followed_and_odd_names_are_not_trial_folders(laid_out, tmp_path):
    experiment, staging, rows, previous = laid_out
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    (experiment / "classifier_a1b2c3d4" / "result.json").unlink()
    os.symlink(precious, experiment / "classifier_a1b2c3d4" / "result.json")
    (staging / "not_a_trial").mkdir()
    (staging / "not_a_trial" / "params.json").write_text("{}")
    recover_staged_trial_files(str(experiment), previous)
    assert precious.read_text() == "mine"
    assert not (experiment / "not_a_trial").exists()


def test_a_trial_folder_linked_elsewhere_is_not_written_through(laid_out, tmp_path):
    experiment, staging, rows, previous = laid_out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, experiment / "classifier_e5f6a7b8")
    assert recover_staged_trial_files(str(experiment), previous) == ["classifier_a1b2c3d4"]
    assert list(elsewhere.iterdir()) == []


def test_an_ended_trials_files_are_not_saved_through_a_linked_folder(tmp_path, monkeypatch):
    from tunelab import trial_files

    staging, elsewhere = tmp_path / "staging", tmp_path / "elsewhere"
    staging.mkdir()
    elsewhere.mkdir()
    (staging / "result.json").write_text('{"epoch": 1}\n')
    os.symlink(elsewhere, tmp_path / "classifier_a1b2c3d4")
    import pyarrow.fs

    monkeypatch.setattr("tunelab.compat.ray.trial_staging",
                        lambda trial: (str(staging), pyarrow.fs.LocalFileSystem(), str(tmp_path / "classifier_a1b2c3d4")))
    with pytest.raises(OSError, match="is a symbolic link"):
        trial_files.save_trial_files_now(object())
    assert list(elsewhere.iterdir()) == []
