"""Real Ray Tune runs, tiny, on the one shared two-node local cluster (see conftest.ray_cluster)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from tests.in_process import tunelab
from tunelab.driver import run_tune
from tunelab.ray_state import SNAPSHOT_FILE
from tunelab.tune_options import TuneOptions

pytestmark = pytest.mark.ray
TINY = ["image_size=8", "width=8", "batch_size=128"]
CONTRACT = ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "val/acc_top5", "val/acc_best"]


def _progress(experiment: Path) -> dict[str, pd.DataFrame]:
    return {p.parent.name: pd.read_csv(p, dtype={"trial_id": str}) for p in experiment.glob("*/progress.csv")}


def test_asha_with_optuna_records_pruned_trials_as_pruned(ray_cluster, tmp_path):
    from ray.tune import ExperimentAnalysis, Tuner

    db = tmp_path / "study.db"
    # One trial at a time: which trials ASHA stops then depends only on the seed (bracket draws,
    # TPE's suggestions, CPU training), not on which of two concurrent trials reaches a rung first;
    # with two at a time a run once stopped none of the six.
    summary = run_tune(TuneOptions(method="classifier", num_samples=6, max_epochs=3, reduction_factor=2,
                                   storage=f"file://{tmp_path}", name="asha", sets=TINY, seed=1,
                                   optuna_storage=f"sqlite:///{db}", startup_trials=2, max_concurrent=1))
    experiment = tmp_path / "asha"
    assert summary["trials"] == 6 and summary["best_metric"] > 0.1
    assert summary["best_config"]["epochs"] == 3 and "lr" in summary["best_config"]
    analysis = ExperimentAnalysis(str(experiment))
    assert len(analysis.trials) == 6
    for frame in _progress(experiment).values():
        assert all(c in frame.columns for c in CONTRACT)
        assert list(frame["epoch"]) == list(range(1, len(frame) + 1))
    assert Tuner.can_restore(str(experiment))
    # Ray's own reader needs no metric or mode: the experiment records them.
    from tunelab.trainables import METHODS

    best = Tuner.restore(str(experiment), trainable=METHODS["classifier"]).get_results().get_best_result()
    assert best.metrics["val/acc"] == pytest.approx(summary["best_metric"]) or \
        best.metrics_dataframe["val/acc"].max() == pytest.approx(summary["best_metric"])
    record = json.loads((experiment / "tunelab.json").read_text())
    assert record["method"] == "classifier" and record["git_commit"] and record["packages"]["ray"]
    # The driver's final word on each trial, which the loader prefers to Ray's snapshot.
    trial_ids = sorted(f.iloc[-1]["trial_id"] for f in _progress(experiment).values())
    assert sorted(record["final_statuses"]) == trial_ids

    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{db}")
    by_state = {s: [t for t in study.trials if t.state == s] for s in TrialState}
    epochs = {f.iloc[-1]["trial_id"]: int(f["epoch"].max()) for f in _progress(experiment).values()}
    assert len(study.trials) == 6
    assert by_state[TrialState.PRUNED], "ASHA with reduction factor 2 stops some of 6 trials"
    for trial in by_state[TrialState.PRUNED]:
        assert trial.intermediate_values and max(trial.intermediate_values) < 3
    for trial in by_state[TrialState.COMPLETE]:
        assert sorted(trial.intermediate_values) == [1, 2, 3]
        assert trial.value == max(trial.intermediate_values.values())
    assert sum(1 for e in epochs.values() if e == 3) == len(by_state[TrialState.COMPLETE])

    # Default checkpoint interval (60 s) >> these trials: one checkpoint, at the last epoch, and
    # only for trials that got there; no TensorBoard files unless asked for.
    for folder in (p.parent for p in experiment.glob("*/progress.csv")):
        checkpoints = sorted(folder.glob("checkpoint_*/checkpoint.pt"))
        last_epoch = int(pd.read_csv(folder / "progress.csv")["epoch"].max())
        assert len(checkpoints) == (1 if last_epoch == 3 else 0), folder.name
        if checkpoints:
            assert torch.load(checkpoints[0], weights_only=True)["epoch"] == 3
        assert not list(folder.glob("events.out.tfevents*"))


def test_four_quarter_gpu_trials_share_one_logical_gpu(ray_cluster, tmp_path):
    # Trials of several seconds: progress.csv timestamps are whole seconds, so second-long trials
    # could not show their overlap.
    summary = run_tune(TuneOptions(method="classifier", num_samples=4, max_epochs=8, scheduler="fifo",
                                   gpus_per_trial=0.25, storage=f"file://{tmp_path}", name="gpu",
                                   sets=TINY + ["image_size=16", "width=16", "device=cpu"], max_concurrent=4,
                                   tensorboard=True))
    assert summary["statuses"] == {"finished": 4}
    assert len(list((tmp_path / "gpu").glob("*/events.out.tfevents*"))) == 4
    frames = list(_progress(tmp_path / "gpu").values())
    first_epoch_end = max(f["timestamp"].min() for f in frames)
    last_epoch_end = min(f["timestamp"].max() for f in frames)
    assert first_epoch_end <= last_epoch_end, "the four 0.25-GPU trials did not all run at the same time"
    state = json.loads((tmp_path / "gpu" / "tunelab.json").read_text())
    assert state["resources"]["gpus_per_trial"] == 0.25


def test_stop_at_ends_the_whole_search(ray_cluster, tmp_path):
    summary = run_tune(TuneOptions(method="classifier", num_samples=6, max_epochs=3, scheduler="fifo",
                                   search="random", max_concurrent=1, stop_at=0.0,
                                   storage=f"file://{tmp_path}", name="stop", sets=TINY))
    frames = _progress(tmp_path / "stop")
    assert summary["trials"] < 6 and sum(len(f) for f in frames.values()) == 1


@pytest.mark.heavy  # multi-node
def test_trials_are_placed_on_both_nodes(ray_cluster, tmp_path):
    summary = run_tune(TuneOptions(method="classifier", num_samples=4, max_epochs=3, scheduler="fifo",
                                   cpus_per_trial=2, storage=f"file://{tmp_path}", name="nodes",
                                   sets=TINY + ["image_size=16"]))
    assert summary["trials"] == 4
    nodes = {node for f in _progress(tmp_path / "nodes").values() for node in f["node_id"]}
    assert len(nodes) == 2


def test_local_storage_on_a_multi_node_cluster_is_refused(ray_cluster, tmp_path):
    from tunelab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="is a local path but the cluster has 2 nodes"):
        run_tune(TuneOptions(method="classifier", num_samples=1, storage=str(tmp_path), name="x", sets=TINY))


def _readable_state(experiment: Path) -> tuple[dict[str, bytes], list[str]] | None:
    """Ray's snapshot files as they stand now (None while one is mid-write), and the trial statuses."""
    import pickle

    files = sorted(experiment.glob("experiment_state-*.json"))
    if not files:
        return None
    try:
        text = files[-1].read_bytes()
        statuses = [json.loads(trial)["status"] for trial, _ in json.loads(text)["trial_data"]]
        others = {p.name: p.read_bytes() for pattern in ("searcher-state-*.pkl", "search_gen_state-*.json")
                  for p in experiment.glob(pattern)}
        for data in others.values():
            pickle.loads(data)
    except (ValueError, EOFError, pickle.UnpicklingError, KeyError):
        return None
    return {files[-1].name: text, **others}, statuses


@pytest.mark.heavy  # a fault-matrix case on Ray: SIGKILL, then resume
def test_a_trial_that_ended_after_rays_last_snapshot_is_recorded_ended_not_run_again(ray_cluster, tmp_path):
    """Ray copies its snapshot and the trials' result files to the storage file by file every few
    seconds: a killed driver can leave a trial's last epoch on disk while the snapshot still has the
    trial running. Such a lagging snapshot is made here for certain: a search runs to its end while
    its snapshots are copied aside, then the last one that still had a trial running is put back."""
    cluster, _ = ray_cluster
    # A snapshot at every step, so one catches the last trials running.
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    experiment = tmp_path / "lagged"
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--num-samples", "4", "--max-epochs", "3",
               "--scheduler", "fifo", "--max-concurrent", "2", "--storage", f"file://{tmp_path}", "--name", "lagged",
               *sum((["--set", s] for s in TINY + ["image_size=16"]), [])]
    log = tmp_path / "tune.log"
    with open(log, "w") as stderr:
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    lagging = None
    while driver.poll() is None:
        state = _readable_state(experiment)
        if state is not None and len(state[1]) == 4 and "RUNNING" in state[1]:
            lagging = state  # every trial created, at least one still running
        time.sleep(0.05)
    assert driver.returncode == 0, log.read_text()[-2000:]
    assert lagging is not None, "no snapshot caught a trial running"
    files, statuses = lagging
    for name, data in files.items():
        (experiment / name).write_bytes(data)
    before = {name: (experiment / name / "result.json").read_bytes() for name in _progress(experiment)}
    assert len(before) == 4 and all(len(frame) == 3 for frame in _progress(experiment).values())

    result = tunelab("resume", str(experiment), env={"RAY_ADDRESS": cluster.address})

    assert result.returncode == 0, result.stderr[-2000:]
    recorded = [line for line in result.stderr.splitlines() if "recorded it as ended instead of running it again" in line]
    assert len(recorded) == statuses.count("RUNNING"), result.stderr[-2000:]
    # No trial ran again: every result file is byte for byte what the search wrote.
    assert {name: (experiment / name / "result.json").read_bytes() for name in before} == before
    from ray.tune import ExperimentAnalysis

    for trial in ExperimentAnalysis(str(experiment)).trials:
        assert trial.status == "TERMINATED" and trial.last_result["epoch"] == 3, trial.trial_id
        assert Path(trial.checkpoint.path).is_dir(), trial.checkpoint  # the final checkpoint is the latest
    # The searcher's snapshot was told what it missed: every study trial complete with all three epochs.
    from tunelab.ray_state import tuner_search_alg

    searcher = tuner_search_alg(experiment)
    searcher.restore_from_dir(str(experiment))
    study_trials = searcher._ot_study.get_trials()
    assert [t.state for t in study_trials] == [TrialState.COMPLETE] * 4
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study_trials)


@pytest.mark.heavy  # a fault-matrix case on Ray: SIGKILL, then resume
def test_a_trial_that_ended_moments_before_a_hard_kill_keeps_its_results(ray_cluster, tmp_path):
    """Ray copies the trials' result files from its staging folder into the experiment only with its
    periodic snapshot; here that copy never comes (a one-hour period), so the ended trial's results
    reach the experiment only because tunelab saves them when the trial ends. The driver is then
    SIGKILLed: `resume` must find the trial ended and not train it again."""
    cluster, _ = ray_cluster
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
    experiment = tmp_path / "kept"
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--num-samples", "2", "--max-epochs", "3",
               "--scheduler", "fifo", "--max-concurrent", "1", "--storage", f"file://{tmp_path}", "--name", "kept",
               *sum((["--set", s] for s in TINY + ["image_size=16"]), [])]
    log = tmp_path / "tune.log"
    with open(log, "w") as stderr:
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        ended = {}
        while driver.poll() is None and not ended:
            ended = {name: frame for name, frame in _progress(experiment).items() if len(frame) == 3}
            time.sleep(0.05)
        assert ended and driver.poll() is None, \
            "the ended trial's results reached the experiment only when the search ended\n" + log.read_text()[-2000:]
        driver.kill()  # SIGKILL: no handler runs, Ray copies nothing more
    finally:
        driver.wait(timeout=60)
    (name,) = ended
    before = (experiment / name / "result.json").read_bytes()
    assert len(before.splitlines()) == 3

    result = tunelab("resume", str(experiment), "--json", env={"RAY_ADDRESS": cluster.address})

    assert result.returncode == 0, result.stderr[-2000:]
    assert "recorded it as ended instead of running it again" in result.stderr, result.stderr[-2000:]
    assert (experiment / name / "result.json").read_bytes() == before  # not trained again
    assert json.loads(result.stdout.strip().splitlines()[-1])["statuses"] == {"finished": 2}


def _as_if_stopped_at_epoch_1(trial_folder: Path) -> None:
    """Cut a trial's result files back to its first epoch, logged as Ray logs the row on which a
    scheduler (ASHA) or a stopper stopped the trial: `done` true."""
    rows = (trial_folder / "result.json").read_text().splitlines()
    first = json.loads(rows[0])
    assert first["done"] is False and first["epoch"] == 1
    (trial_folder / "result.json").write_text(json.dumps({**first, "done": True}) + "\n")
    progress = (trial_folder / "progress.csv").read_text().splitlines(keepends=True)
    (trial_folder / "progress.csv").write_text("".join(progress[:2]))


@pytest.mark.heavy  # a fault-matrix case on Ray: SIGKILL, then resume
@pytest.mark.parametrize("persistent_study", [False, True], ids=["in-memory study, stopped by ASHA",
                                                                 "--optuna-storage, finished"])
def test_a_trial_created_and_ended_after_rays_last_snapshot_is_added_not_replaced(ray_cluster, tmp_path,
                                                                                   persistent_study):
    """A trial Ray created after its last snapshot and that ended is in no state Ray saved: Ray
    would start another in its place. The lagging snapshot is made for certain as above: the last
    one with two of the three trials is put back once the search has ended. With the in-memory
    study the late trial is made one that ASHA stopped at epoch 1: it stays stopped, not trained on."""
    cluster, _ = ray_cluster
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    experiment = tmp_path / "late"
    study = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--num-samples", "3", "--max-epochs", "2",
               "--scheduler", "fifo", "--max-concurrent", "1", "--storage", f"file://{tmp_path}", "--name", "late",
               *(["--optuna-storage", study] if persistent_study else []),
               *sum((["--set", s] for s in TINY + ["image_size=16"]), [])]
    log = tmp_path / "tune.log"
    with open(log, "w") as stderr:
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    lagging = None
    while driver.poll() is None:
        state = _readable_state(experiment)
        if state is not None and len(state[1]) == 2:
            lagging = state  # two trials recorded, the third not yet created
        time.sleep(0.05)
    assert driver.returncode == 0, log.read_text()[-2000:]
    assert lagging is not None, "no snapshot caught two trials"
    for name, data in lagging[0].items():
        (experiment / name).write_bytes(data)
    recorded = {json.loads(trial)["trial_id"] for trial, _ in json.loads(next(iter(lagging[0].values())))["trial_data"]}
    from tunelab.core.trial_folders import parse_trial_folder_name

    (late,) = [name for name in _progress(experiment) if parse_trial_folder_name(name, "classifier")[1] not in recorded]
    stopped = not persistent_study
    if stopped:  # in the experiment and in Ray's staging copy, which Ray syncs in again on this cluster
        from tunelab.compat.ray import driver_staging_folder, session_dir

        trial_json = json.loads(next(iter(lagging[0].values())))["trial_data"][0][0]
        staged = Path(driver_staging_folder(session_dir(), trial_json)[0]) / late
        for trial_folder in (experiment / late, *([staged] if staged.is_dir() else [])):
            _as_if_stopped_at_epoch_1(trial_folder)
    before = {name: (experiment / name / "result.json").read_bytes() for name in _progress(experiment)}
    assert len(before) == 3

    result = tunelab("resume", str(experiment), "--json", env={"RAY_ADDRESS": cluster.address})

    assert result.returncode == 0, result.stderr[-2000:]
    adopted = f"was created after Ray's last snapshot and had ended at epoch {1 if stopped else 2}; added it as ended"
    assert result.stderr.count(adopted) == 1, result.stderr[-2000:]
    statuses = json.loads(result.stdout.strip().splitlines()[-1])["statuses"]
    assert statuses == ({"finished": 2, "stopped": 1} if stopped else {"finished": 3})
    # No trial was started in its place, and none ran again.
    assert {name: (experiment / name / "result.json").read_bytes() for name in _progress(experiment)} == before
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(experiment)).trials
    epochs = {t.trial_id: t.last_result["epoch"] for t in trials}
    assert len(trials) == 3 and all(t.status == "TERMINATED" for t in trials)
    assert sorted(epochs.values()) == ([1, 2, 2] if stopped else [2, 2, 2])
    if persistent_study:
        stored = optuna.load_study(study_name="late", storage=study).trials
    else:
        from tunelab.ray_state import tuner_search_alg

        searcher = tuner_search_alg(experiment)
        searcher.restore_from_dir(str(experiment))
        stored = searcher._ot_study.get_trials()
    assert sorted(t.user_attrs["ray_trial_id"] for t in stored) == sorted(t.trial_id for t in trials)
    for study_trial in stored:
        epochs_run = epochs[study_trial.user_attrs["ray_trial_id"]]
        assert study_trial.state == (TrialState.PRUNED if epochs_run == 1 else TrialState.COMPLETE)
        assert sorted(study_trial.intermediate_values) == list(range(1, epochs_run + 1))


@pytest.mark.heavy  # a fault-matrix case on Ray: SIGKILL, then resume
def test_driver_killed_mid_run_is_completed_by_resume(ray_cluster, tmp_path):
    cluster, _ = ray_cluster
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1"}
    experiment = tmp_path / "killed"
    study = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--num-samples", "5", "--max-epochs", "3",
               "--optuna-storage", study,
               "--scheduler", "fifo", "--max-concurrent", "2", "--storage", f"file://{tmp_path}", "--name",
               "killed", *sum((["--set", s] for s in TINY + ["image_size=16"]), [])]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            finished = {k: f for k, f in _progress(experiment).items() if len(f) == 3}
            if len(finished) >= 2:
                break
            time.sleep(0.5)
        assert len(finished) >= 2, "no trials finished before the deadline"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    time.sleep(2)  # let the snapshot written before the kill settle; nothing more is written
    # Nothing finished is lost: the interrupted experiment reads as it stands.
    from ray.tune import ExperimentAnalysis

    from tunelab.analysis.load import load_experiment, trial_summary

    assert len(ExperimentAnalysis(str(experiment)).trials) >= 2
    interrupted = trial_summary(load_experiment(experiment))
    assert (interrupted["status"] == "finished").sum() >= 2
    before = {k: f["timestamp"].tolist() for k, f in _progress(experiment).items() if len(f) == 3}
    # As if the kill had cut Ray's copy of its experiment state short: resume puts back the whole
    # copy tunelab kept of that snapshot (tunelab.whole_snapshot) and goes on. Without that copy
    # (an experiment from before it) resume refuses in one line, exit 2, before starting anything,
    # and changes nothing.
    state = max(experiment.glob("experiment_state-*.json"))
    whole = state.read_bytes()
    cut = tmp_path / "cut" / "killed"
    shutil.copytree(experiment, cut)
    (cut / SNAPSHOT_FILE).unlink()
    (cut / state.name).write_bytes(whole[:2000])
    files = sorted(p.name for p in cut.iterdir())
    # The resumes run in-process, on the same (shared) cluster the killed driver had joined.
    refused = tunelab("resume", str(cut), timeout=120)
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr[-3000:]
    assert f"Ray's {state.name} is unreadable" in refused.stderr and sorted(p.name for p in cut.iterdir()) == files
    state.write_bytes(whole[:2000])
    result = tunelab("resume", str(experiment), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Ray's {state.name} (kept as {state.name}.unreadable) was cut short" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 5 and summary["statuses"] == {"finished": 5}
    after = _progress(experiment)
    assert len(after) == 5
    for name, frame in after.items():
        # A trial killed mid-epoch redoes the epochs after its last snapshotted checkpoint; Ray
        # appends those rows, so a reader keeps the last row per epoch. None may be missing.
        assert sorted(set(frame["epoch"])) == [1, 2, 3] and frame["epoch"].iloc[-1] == 3, name
    for name, stamps in before.items():
        assert after[name]["timestamp"].tolist() == stamps, f"finished trial {name} was re-run"
    trials = optuna.load_study(study_name="killed", storage=study).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5, [t.state for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING], "a study trial left RUNNING forever"
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in complete)
