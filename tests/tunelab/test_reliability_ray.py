"""Honest endings in real (tiny) Ray runs: interrupted searches, searches where nothing worked, a
killed driver's leftovers, and restarted trials in reports."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tunelab.analysis.load import load_experiment, trial_summary
from tests.conftest import sigint_as_at_a_terminal
from tests.in_process import tunelab
from tunelab.cli import main
from tunelab.ray_state import SNAPSHOT_FILE

pytestmark = pytest.mark.ray
TINY = ["image_size=8", "width=8", "batch_size=128"]



def _read_progress(path):
    """A trial's progress.csv as the test polls it, or None while Ray's periodic copy is rewriting it
    (Ray copies the file in place: a reader can catch it empty or cut)."""
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return None

def _sets(values):
    return sum((["--set", v] for v in values), [])


def _progress(experiment: Path) -> dict[str, pd.DataFrame]:
    return {p.parent.name: frame for p in experiment.glob("*/progress.csv") if (frame := _read_progress(p)) is not None}


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.heavy  # a fault-matrix case on Ray: SIGTERM, then resume
def test_sigterm_exits_130_with_the_running_trial_incomplete_and_resume_continues_it(ray_cluster, tmp_path):
    cluster, _ = ray_cluster
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1"}
    experiment = tmp_path / "intr"
    # 30 epochs of ~0.2 s: the SIGTERM, sent after the fourth, lands long before the trial's end
    # (every epoch is checkpointed); 100 epochs a trial made the resume train 45 s longer here
    epochs_each = 30
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--num-samples", "2", "--max-epochs",
               str(epochs_each),
               "--scheduler", "fifo", "--max-concurrent", "1", "--checkpoint-interval", "0",
               "--storage", f"file://{tmp_path}", "--name", "intr", *_sets(TINY)]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(len(f) >= 4 for f in _progress(experiment).values()), 180, "four epochs")
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 130, err[-3000:]
    assert "interrupted with 1 trial(s) incomplete; continue with `tunelab resume" in err
    record = json.loads((experiment / "tunelab.json").read_text())
    assert list(record["final_statuses"].values()).count("incomplete") == 1  # the one running when it came
    assert set(record["final_statuses"].values()) <= {"incomplete", "finished"}
    assert "incomplete" in set(trial_summary(load_experiment(experiment))["status"])

    # Ray's snapshot names the trial's latest checkpoint. Make it look as after a hard kill, where a
    # newer checkpoint had already replaced it: resume must continue from the newest one on disk.
    from ray.tune import ExperimentAnalysis

    interrupted = [i for i, status in record["final_statuses"].items() if status == "incomplete"]
    (trial,) = [t for t in ExperimentAnalysis(str(experiment)).trials if t.trial_id in interrupted]
    named = Path(trial.checkpoint.path)
    index = int(named.name.rsplit("_", 1)[-1])
    newer = max(named.parent.glob("checkpoint_*"))
    if newer == named:
        newer = named.with_name(f"checkpoint_{index + 1:06d}")
        named.rename(newer)
    else:  # the snapshot already lags the newest checkpoint on disk
        shutil.rmtree(named)
    # ... and a kept checkpoint the snapshot lists was deleted too (a better one came after it), which
    # Ray's eviction later failed on ("Error handling checkpoint ... FileNotFoundError").
    listed = [Path(r.checkpoint.path) for r in trial.run_metadata.checkpoint_manager.best_checkpoint_results]
    lost = [path for path in listed if path != named and path.exists()]
    for path in lost[:1]:
        shutil.rmtree(path)
    epochs_before = len(_progress(experiment)[named.parent.name])

    result = tunelab("resume", str(experiment), "--json")  # in-process: Ray's log lines land in its stderr too
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"continues from its newest checkpoint ({newer.name})" in result.stderr
    assert ("forgot 1 checkpoint(s)" in result.stderr) == bool(lost)
    assert "Error handling checkpoint" not in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 2 and summary["statuses"] == {"finished": 2}
    frame = _progress(experiment)[named.parent.name]
    epochs = set(frame["epoch"])
    assert epochs <= set(range(1, epochs_each + 1)) and epochs_each in epochs
    # Ray Tune can stop a trial after it registered an epoch's checkpoint but before its CSV logger wrote
    # that epoch's row (seen once in four runs): the trial continues after that epoch, whose row is then
    # missing. At most that one epoch, at the interruption, may lack a row; every other epoch is there.
    missing = set(range(1, epochs_each + 1)) - epochs
    assert len(missing) <= 1 and all(e <= epochs_before + 1 for e in missing), sorted(missing)
    assert len(frame) < epochs_before + epochs_each, "the resumed trial started over instead of continuing"


@pytest.mark.heavy  # a fault-matrix case on Ray: every trial fails
def test_a_search_where_every_trial_failed_exits_1_naming_an_error_file_in_the_experiment(
        ray_cluster, faults, tmp_path, capsys):
    for i in range(2):
        (faults / f"raise@1.{i}").touch()
    code = main(["tune", "classifier", "--num-samples", "2", "--max-epochs", "2", "--scheduler", "fifo",
                 "--max-concurrent", "1", "--max-failures", "0", "--storage", f"file://{tmp_path}", "--name", "bad",
                 *_sets(TINY)])
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [text for text in err.splitlines() if text.startswith("tunelab: error:")]
    assert "no trial produced a result (2 errored); first error: " in line
    error_file = line.split("first error: ")[1].removeprefix("file://")
    assert Path(error_file).is_file() and Path(error_file).parent.parent == tmp_path / "bad"
    assert "injected fault" in Path(error_file).read_text()


@pytest.mark.heavy  # a fault-matrix case on Ray: a failed trial run again
def test_restart_errored_supersedes_the_failed_trial_in_reports(ray_cluster, faults, tmp_path, capsys):
    (faults / "raise@2.a").touch()
    (faults / "raise@2.b").touch()
    storage = f"file://{tmp_path}"
    assert main(["tune", "classifier", "--num-samples", "2", "--max-epochs", "3", "--scheduler", "fifo",
                 "--max-concurrent", "1", "--max-failures", "1", "--checkpoint-interval", "0",
                 "--storage", storage, "--name", "re", *_sets(TINY)]) == 0
    experiment = tmp_path / "re"
    assert sorted(trial_summary(load_experiment(experiment))["status"]) == ["errored", "finished"]
    assert main(["resume", str(experiment), "--restart-errored"]) == 0
    summary = trial_summary(load_experiment(experiment))
    assert len(list(experiment.glob("classifier_*"))) == 3, "Ray restarts an errored trial in a new folder"
    assert len(summary) == 2 and set(summary["status"]) == {"finished"}
    assert summary["epochs"].sum() == 6


@pytest.mark.heavy  # a fault-matrix case on Ray: SIGKILL, then resume
def test_resume_after_a_killed_private_driver_ends_its_leftover_ray_processes_and_rebuilds_a_cut_snapshot(
        ray_cluster, tmp_path):
    from tunelab.cluster import session_processes

    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}
    experiment = tmp_path / "k"
    study = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--num-samples", "2", "--max-epochs", "30",
               "--scheduler", "fifo", "--max-concurrent", "1", "--checkpoint-interval", "0",
               "--optuna-storage", study, "--storage", str(tmp_path), "--name", "k", *_sets(TINY)]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: any(len(f) >= 2 for f in _progress(experiment).values()), 180, "two epochs")
        holder = json.loads((tmp_path / ".k.lock").read_text())
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    session = holder["ray_session"]
    time.sleep(2)
    left = session_processes(session)
    # The kill can land while Ray copies its snapshot into the storage (plain writes): cut the
    # searcher's short as such a kill does, so resume must rebuild it rather than hang on it.
    # Without tunelab's whole copy of the snapshot (as in an experiment recorded before it kept
    # one): with it, resume puts the copy back instead (test_tune_ray.py).
    (experiment / SNAPSHOT_FILE).unlink()
    snapshot = max(experiment.glob("searcher-state-*.pkl"))
    snapshot.write_bytes(snapshot.read_bytes()[:1000])
    result = tunelab("resume", str(experiment), "--json")  # in-process, on the shared test cluster
    assert result.returncode == 0, result.stderr[-3000:]
    assert "taking over the stale lock" in result.stderr
    assert f"the searcher's snapshot {snapshot.name} was cut short" in result.stderr
    assert (experiment / f"{snapshot.name}.unreadable").stat().st_size == 1000
    assert session_processes(session) == [], f"left after the kill: {left}"
    assert json.loads(result.stdout.strip().splitlines()[-1])["statuses"] == {"finished": 2}
    import optuna
    from optuna.trial import TrialState

    trials = optuna.load_study(study_name="k", storage=study).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.user_attrs.get("ray_trial_id") for t in trials)
    assert {t.user_attrs["trial_dir"] for t in trials} == {p.name for p in experiment.glob("classifier_*")}


@pytest.mark.heavy  # a fault-matrix case on Ray: the time budget, then resume
def test_time_budget_ends_the_search_within_one_epoch_and_resume_continues_the_cut_trials(ray_cluster, faults,
                                                                                          tmp_path):
    experiment = tmp_path / "budget"
    # Every epoch sleeps 0.8 s first (faults): a trial of 30 epochs outlasts the 20 s budget on any
    # machine, and its first epoch comes within it on a loaded one (a 10 s budget with 150 plain
    # epochs a trial was sometimes spent before the first report); the resume runs them plain.
    (faults / "sleep").write_text("0.8")
    epochs_each = 30
    first = tunelab("tune", "classifier", "--num-samples", "4", "--max-epochs", str(epochs_each), "--scheduler",
                    "fifo", "--max-concurrent", "2", "--time-budget", "20s", "--storage", f"file://{tmp_path}",
                    "--name", "budget", "--json", *_sets(TINY))
    assert first.returncode == 0, first.stderr[-3000:]  # the budget ending a search is not a failure
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["out_of_time"] and not summary["interrupted"] and summary["statuses"].get("out_of_time", 0) >= 1
    assert "errored" not in summary["statuses"] and "incomplete" not in summary["statuses"]
    assert "time budget spent with" in first.stderr and "--time-budget DURATION" in first.stderr
    record = json.loads((experiment / "tunelab.json").read_text())
    cut = [t for t, status in record["final_statuses"].items() if status == "out_of_time"]
    assert "out_of_time" in set(trial_summary(load_experiment(experiment))["status"])
    before = _progress(experiment)
    for folder, frame in before.items():  # nobody trained past the deadline by more than one epoch
        slack = frame["time_this_iter_s"].max() + 1.5  # Ray's timestamp is whole seconds
        assert frame["timestamp"].max() <= summary["deadline"] + slack, folder

    (faults / "sleep").unlink()
    second = tunelab("resume", str(experiment), "--time-budget", "10m", "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = json.loads(second.stdout.strip().splitlines()[-1])
    assert resumed["statuses"] == {"finished": 4} and not resumed["out_of_time"]
    after = _progress(experiment)
    for trial in cut:
        (folder,) = [f for f in after if f.endswith(trial)]
        epochs = after[folder]["epoch"]
        # continued from the checkpoint taken at the deadline: no epoch trained twice, none lost
        # (but the one row Ray can drop at a graceful stop, as in the SIGTERM test above)
        assert epochs.max() == epochs_each and len(epochs) >= epochs_each - 1 and epochs.is_unique, folder
        if folder in before:
            assert len(after[folder]) > len(before[folder])


def _driver_pids(marker: str) -> list[int]:
    """This user's processes whose command line names `marker` (here: compare's output folder)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


@pytest.mark.heavy  # a whole compare --parallel
def test_ctrl_c_during_compare_parallel_stops_every_search_resumably(ray_cluster, tmp_path):
    """Ctrl-C reaches compare only (each search driver runs in its own session); compare asks each
    search once to stop and save, waits for them, exits 130 naming every experiment's resume
    command, leaves no driver running, and a resumed search finishes its trials. (The time budget
    makes the two searches share the 2 CPUs, one trial each, so both are mid-trial at the Ctrl-C.)"""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sleep").write_text("0.5")  # 20 epochs take 10 s: long enough to interrupt mid-trial
    out = tmp_path / "c"
    env = {**os.environ, "RAY_ADDRESS": "local", "TUNELAB_FAULTS_DIR": str(faults), "PYTHONUNBUFFERED": "1"}
    compare = subprocess.Popen([sys.executable, "-m", "tunelab", "compare", "--methods", "classifier,arcface",
                                "--replicates", "1",
                                "--num-samples", "2", "--max-epochs", "20", "--grace-period", "20", "--seeds", "1",
                                "--parallel", "--time-budget", "10m", "--out", str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_as_at_a_terminal)
    try:
        for method in ("classifier", "arcface"):
            _wait_for(lambda: any(len(f) >= 2 for f in _progress(out / "runs" / method).values()), 240,  # noqa: B023 - called here
                      f"two epochs of a {method} trial")
        drivers = [p for p in _driver_pids(f"--storage={(out / 'runs').as_uri()}") if p != compare.pid]
        assert len(drivers) == 2, "one tunelab tune driver per method"
        compare.send_signal(signal.SIGINT)
        _, err = compare.communicate(timeout=180)
    finally:
        compare.kill()
        for pid in _driver_pids(f"--storage={(out / 'runs').as_uri()}"):
            os.kill(pid, signal.SIGKILL)
    assert compare.returncode == 130, err[-3000:]
    assert "asking every search to stop and save its experiment" in err
    for method in ("classifier", "arcface"):
        assert f"{method}: resumable with `tunelab resume {(out / 'runs').as_uri()}/{method}`" in err
        statuses = json.loads((out / "runs" / method / "tunelab.json").read_text())["final_statuses"]
        assert "incomplete" in statuses.values(), statuses
    assert not [p for p in drivers if Path(f"/proc/{p}").exists()], "a search driver outlived compare"

    (faults / "sleep").unlink()
    resumed = tunelab("resume", f"{(out / 'runs').as_uri()}/classifier", "--json")  # in-process, shared cluster
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["statuses"] == {"finished": 2}


# Made by tunelab 0.1.0 (before its packages moved under `tunelab.`: its pickles name the top-level
# `search_spaces`): `tunelab tune classifier --num-samples 2 --max-epochs 30 --scheduler fifo
# --max-concurrent 1 --time-budget 12s --storage /tmp/tunelab-0.1.0-fixture --name experiment`
# with image_size=8 width=8 batch_size=128 and a 1 s sleep per epoch (faults): the budget cut the
# first trial after one epoch, the second never started. Ray's saved search state names the
# folder it was made in; the recorded folder was deleted after the copy.
EXPERIMENT_0_1_0 = Path(__file__).resolve().parents[1] / "data" / "experiment-0.1.0"


def test_an_experiment_recorded_by_0_1_0_and_copied_elsewhere_resumes_in_the_copy(ray_cluster, tmp_path):
    recorded = Path(json.loads((EXPERIMENT_0_1_0 / "tunelab.json").read_text())["experiment"])
    recorded_existed = recorded.parent.exists()
    copy = tmp_path / "copy"
    shutil.copytree(EXPERIMENT_0_1_0, copy)
    result = tunelab("resume", str(copy), "--time-budget", "10m", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["statuses"] == {"finished": 2} and summary["experiment"] == str(copy)
    trials = _progress(copy)
    assert len(trials) == 2 and all(frame["epoch"].max() == 30 for frame in trials.values()), trials.keys()
    # Nothing written where the experiment was recorded: that folder is not this copy's.
    if not recorded_existed:
        assert not recorded.parent.exists()
