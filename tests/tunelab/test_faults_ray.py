"""Faults survived: real Ray trials that raise, diverge, run out of memory, or lose their node."""
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tunelab.analysis.load import load_experiment
from tunelab.driver import run_tune
from tunelab.tune_options import TuneOptions

pytestmark = pytest.mark.ray
TINY = ["image_size=8", "width=8", "batch_size=128"]



def _read_progress(path):
    """A trial's progress.csv as the test polls it, or None while Ray's periodic copy is rewriting it
    (Ray copies the file in place: a reader can catch it empty or cut)."""
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return None

def _arm(faults: Path, *tokens: str) -> None:
    for token in tokens:
        (faults / token).touch()


def _trial_frames(experiment: Path) -> dict[str, pd.DataFrame]:
    return {p.parent.name: frame for p in experiment.glob("*/progress.csv") if (frame := _read_progress(p)) is not None}


def _wait_for_a_trial_on(experiment: Path, node_id: str, runner: threading.Thread, seconds: float = 180) -> bool:
    """True once a trial of the running search has reported from `node_id`; False after `seconds`
    or once the search has ended without one."""
    deadline = time.time() + seconds
    while time.time() < deadline and runner.is_alive():
        if any((f["node_id"] == node_id).any() for f in _trial_frames(experiment).values()):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.heavy  # a fault-matrix case on Ray: a raising trial
def test_raising_trial_is_retried_from_its_checkpoint_then_recorded_as_errored(ray_cluster, faults, tmp_path):
    # Trials run one at a time. The first claims raise@2.a, is retried from its epoch-1 checkpoint,
    # claims raise@2.b and has used its one retry: errored. The second fails once at epoch 3 and
    # finishes after a retry from its epoch-2 checkpoint. The third never fails.
    _arm(faults, "raise@2.a", "raise@2.b", "raise@3.c")
    summary = run_tune(TuneOptions(method="classifier", num_samples=3, max_epochs=3, scheduler="fifo",
                                   max_concurrent=1, max_failures=1, storage=f"file://{tmp_path}", name="raise",
                                   sets=TINY, checkpoint_interval_s=0))
    assert summary["statuses"] == {"errored": 1, "finished": 2}
    experiment = tmp_path / "raise"
    errors = sorted(experiment.glob("*/error.txt"))
    assert len(errors) == 2 and all("injected fault" in e.read_text() for e in errors)
    frames = _trial_frames(experiment)
    for name, frame in frames.items():
        # retried from the checkpoint: no epoch trained twice
        assert frame["epoch"].is_unique, (name, list(frame["epoch"]))
    statuses = load_experiment(experiment).drop_duplicates("trial_id")["status"].value_counts().to_dict()
    assert statuses == {"finished": 2, "errored": 1}


@pytest.mark.heavy  # a fault-matrix case on Ray: divergence and out-of-memory
def test_diverged_and_out_of_memory_trials_end_while_others_go_on(ray_cluster, faults, tmp_path):
    _arm(faults, "oom@1", "nan@2")
    summary = run_tune(TuneOptions(method="classifier", num_samples=3, max_epochs=3, scheduler="fifo",
                                   max_concurrent=1, max_failures=0, storage=f"file://{tmp_path}", name="nan",
                                   sets=TINY))
    assert summary["statuses"] == {"errored": 1, "diverged": 1, "finished": 1}
    experiment = tmp_path / "nan"
    assert "OutOfMemoryError" in next(experiment.glob("*/error.txt")).read_text()
    frames = load_experiment(experiment)
    diverged = frames[frames["status"] == "diverged"]
    assert list(diverged["epoch"]) == [1, 2] and diverged["diverged"].tolist() == [0, 1]
    assert not list(faults.iterdir()), "every armed fault fired exactly once"


@pytest.mark.heavy  # multi-node
def test_a_node_leaving_and_another_joining_mid_run_loses_and_duplicates_nothing(ray_cluster, faults, tmp_path):
    """Three nodes (the shared head and worker, and one more); once a trial runs on the third it is
    removed, and a new node joins: all 32 trials finish, each once; the trials that ran on the
    removed node continue elsewhere from their checkpoints; the new node runs trials.

    Every epoch sleeps 2 s first (faults `sleep`): a trial then outlasts a new worker process's
    start-up, as real trials do. Without it Tune hands each trial to a warm actor freed on the old
    nodes before the new node's actor has started (it reuses actors), and the new node stays idle.
    """
    cluster, _ = ray_cluster
    (faults / "sleep").write_text("2")
    doomed = cluster.add_node(num_cpus=2, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    doomed_id = doomed.node_id
    experiment = tmp_path / "lost"
    outcome = {}

    def search():
        outcome["summary"] = run_tune(TuneOptions(
            method="classifier", num_samples=32, max_epochs=4, scheduler="fifo", max_failures=3,
            checkpoint_interval_s=0, storage=f"file://{tmp_path}", name="lost", sets=TINY + ["image_size=16"]))

    runner = threading.Thread(target=search)
    runner.start()
    assert _wait_for_a_trial_on(experiment, doomed_id, runner), "no trial was placed on the node about to be removed"
    cluster.remove_node(doomed)
    joined = cluster.add_node(num_cpus=2, object_store_memory=100 * 2**20)
    # Slower epochs until a trial reports from the new node: on a slow or loaded machine its first
    # worker process can take longer to start than the rest of the run at 2 s an epoch (seen on a
    # 2-core AVX2 machine, where the new node stayed idle); then fast epochs to finish.
    (faults / "sleep").write_text("5")
    _wait_for_a_trial_on(experiment, joined.node_id, runner)
    (faults / "sleep").write_text("0")
    try:
        runner.join(timeout=600)
        assert not runner.is_alive()
    finally:
        cluster.remove_node(joined)
    assert outcome["summary"]["trials"] == 32 and outcome["summary"]["statuses"] == {"finished": 32}
    frames = _trial_frames(experiment)
    assert len(frames) == 32  # none lost, none started twice under another id
    for name, frame in frames.items():
        assert sorted(set(frame["epoch"])) == [1, 2, 3, 4], (name, list(frame["epoch"]))
    moved = [f for f in frames.values() if (f["node_id"] == doomed_id).any() and f["node_id"].iloc[-1] != doomed_id]
    assert moved, "no trial was running on the removed node"
    for frame in moved:  # continued from its checkpoint (every epoch): at most the epoch in flight is redone
        last_there = frame.loc[frame["node_id"] == doomed_id, "epoch"].max()
        first_elsewhere = frame.loc[frame.index > frame.index[frame["node_id"] == doomed_id][-1], "epoch"].iloc[0]
        assert first_elsewhere >= last_there, list(zip(frame["epoch"], frame["node_id"].str[:6]))
    on_joined = [n for n, f in frames.items() if (f["node_id"] == joined.node_id).any()]
    assert on_joined, "the node that joined mid-run received no trial"


@pytest.mark.slow
def test_sixty_four_tiny_trials_four_at_a_time_lose_nothing(ray_cluster, tmp_path):
    summary = run_tune(TuneOptions(method="classifier", num_samples=64, max_epochs=2, scheduler="fifo",
                                   max_concurrent=4, storage=f"file://{tmp_path}", name="load",
                                   sets=TINY + ["image_size=8"]))
    assert summary["trials"] == 64 and summary["statuses"] == {"finished": 64}
    frames = _trial_frames(tmp_path / "load")
    assert len(frames) == 64
    for name, frame in frames.items():
        assert list(frame["epoch"]) == [1, 2], name
    assert len(list((tmp_path / "load").glob("*/result.json"))) == 64
