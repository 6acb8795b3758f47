"""Every registered searcher (tunelab.searcher_plugins.REGISTERED) keeps the contract a search has
with its user: a tiny tune whose driver is killed (SIGKILL, no chance to save) resumes with
`tunelab resume`, keeps every trial that finished, and ends with the number of trials asked for,
each config inside the space."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.in_process import tunelab
from tunelab.analysis.load import load_experiment, trial_summary
from tunelab.searcher_plugins import REGISTERED

pytestmark = pytest.mark.ray
TINY = ["image_size=8", "width=8", "batch_size=128"]
TRIALS, EPOCHS = 4, 3



def _read_progress(path):
    """A trial's progress.csv as the test polls it, or None while Ray's periodic copy is rewriting it
    (Ray copies the file in place: a reader can catch it empty or cut)."""
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return None

def _epochs(experiment) -> dict[str, int]:
    frames = {p.parent.name: frame for p in experiment.glob("*/progress.csv") if (frame := _read_progress(p)) is not None}
    return {name: int(frame["epoch"].max()) for name, frame in frames.items() if len(frame)}


def _finished(experiment) -> set[str]:
    return {name for name, epochs in _epochs(experiment).items() if epochs == EPOCHS}


def _killable(experiment) -> bool:
    """A trial finished and the next one is between its epochs: the kill lands mid-trial. (A kill
    right after a trial's last report, before Ray has ended it, is another case; see the note.)"""
    epochs = _epochs(experiment)
    return bool(_finished(experiment)) and any(0 < e < EPOCHS for e in epochs.values())


@pytest.mark.parametrize("search", sorted(REGISTERED))
def test_a_killed_search_resumes_to_the_trials_asked_for(ray_cluster, faults, tmp_path, search):
    cluster, _ = ray_cluster
    # The kill must land while a trial is between its epochs, seen in its progress.csv in the
    # experiment: Ray copies a running trial's files there with each snapshot (every ~10 s by
    # default; here at every step), and each epoch sleeps 0.5 s first (faults), so the window is
    # seconds wide on any machine. With tiny epochs and the default period, a quiet machine ran
    # every trial between two copies and the wait timed out.
    (faults / "sleep").write_text("0.5")
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    experiment = tmp_path / search
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--search", search, "--num-samples",
               str(TRIALS), "--max-epochs", str(EPOCHS), "--scheduler", "fifo", "--max-concurrent", "1",
               "--checkpoint-interval", "0", "--storage", f"file://{tmp_path}", "--name", search,
               *sum((["--set", s] for s in TINY), [])]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not _killable(experiment):
            time.sleep(0.2)
        assert _killable(experiment), f"{search}: no trial finished and another started before the deadline"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    time.sleep(2)  # the snapshot written before the kill settles; nothing more is written
    before = _finished(experiment)

    resumed = tunelab("resume", str(experiment), "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["statuses"] == {"finished": TRIALS}, (summary["statuses"], resumed.stderr[-3000:])
    assert before <= _finished(experiment)  # nothing that had finished was lost or trained again
    trials = trial_summary(load_experiment(experiment))
    assert len(trials) == TRIALS and set(trials["status"]) == {"finished"}
    record = json.loads((experiment / "tunelab.json").read_text())
    assert record["search"]["algorithm"] == search
    for entry in record["search_space"]:  # every drawn value of a plain range lies inside it
        column = f"config/{entry['name']}"
        if "low" in entry and column in trials and entry.get("type") != "Conditional":
            assert trials[column].between(entry["low"], entry["high"]).all(), (search, entry["name"])
