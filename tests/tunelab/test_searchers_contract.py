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
from tunelab.trainables.faults import FAULTS_ENV

pytestmark = [pytest.mark.ray, pytest.mark.heavy]  # a fault-matrix case on Ray: SIGKILL, then resume
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


def _killable(experiment, faults) -> bool:
    """A trial is held mid-run (fault `hold`, after its first epoch) and another has finished, both
    seen in the experiment's own files: the kill lands mid-trial, with a finished trial to keep."""
    epochs = _epochs(experiment)
    held = any(faults.glob("held.*"))
    return held and bool(_finished(experiment)) and any(0 < e < EPOCHS for e in epochs.values())


@pytest.mark.parametrize("search", sorted(REGISTERED))
def test_a_killed_search_resumes_to_the_trials_asked_for(ray_cluster, faults, tmp_path, search):
    cluster, _ = ray_cluster
    # Two trials at a time: the first to reach its second epoch waits there (fault `hold`, up to
    # minutes) while the others run to their end, so the kill's moment does not depend on the
    # machine's speed. Ray copies the running trial's files into the experiment with each snapshot
    # (here at every step), so its first epoch shows there while it waits.
    (faults / "hold@2").touch()
    # The driver joins the shared cluster as `ray job submit` starts one, its job's runtime
    # environment given in RAY_JOB_CONFIG_JSON_ENV_VAR: that is how its trials see the faults folder.
    job = {"runtime_env": {"env_vars": {FAULTS_ENV: str(faults)}}}
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "0",
           "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job)}
    experiment = tmp_path / search
    command = [sys.executable, "-m", "tunelab", "tune", "classifier", "--search", search, "--num-samples",
               str(TRIALS), "--max-epochs", str(EPOCHS), "--scheduler", "fifo", "--max-concurrent", "2",
               "--checkpoint-interval", "0", "--storage", f"file://{tmp_path}", "--name", search,
               *sum((["--set", s] for s in TINY), [])]
    log = tmp_path / "driver.log"
    with open(log, "wb") as output:
        driver = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None and not _killable(experiment, faults):
            time.sleep(0.2)
        assert _killable(experiment, faults), (f"{search}: no trial held mid-run beside a finished one "
                                               f"(driver exit {driver.poll()}): {log.read_text()[-3000:]}")
        driver.send_signal(signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
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
