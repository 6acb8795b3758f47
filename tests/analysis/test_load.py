"""The experiment loader reads every trial's progress at once (one `read_csv` per distinct header,
not per trial: a third of `report` at 10,000 trials). Checked against the per-trial reading it
replaced, written out here as the reference, over random experiments: repeated epochs (a resumed
trial), trials that never reported, trials with other columns, damaged files, and no final
statuses in the record (each trial's status then comes from its rows)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.analysis.load import load_experiment, trial_status
from tunelab.core.record import FINAL_STATUSES

EXPERIMENT_0_1_0 = Path(__file__).resolve().parents[1] / "data" / "experiment-0.1.0"
TRIAL = "classifier_a05b73bf"
MAX_EPOCHS = 3  # the stored experiment's max_t


def _reference(path: Path) -> pd.DataFrame:
    """The loader as it was: each trial's progress.csv read on its own, its repeated epochs
    dropped (last kept), sorted by epoch; a trial without rows one empty row; then concatenated."""
    from tunelab.analysis.load import CONFIG_PREFIX, read_record, resolved_config
    from tunelab.core import metrics as M

    record = read_record(path)
    trials, rows = [], []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and (p / "params.json").exists()):
        text = (folder / "progress.csv").read_text() if (folder / "progress.csv").exists() else ""
        if text.startswith("bad"):
            continue  # the damaged ones: both loaders skip them
        frame = pd.read_csv(folder / "progress.csv", dtype={"trial_id": str}) if text else pd.DataFrame()
        if not frame.empty:
            frame = frame.drop_duplicates(subset=[M.EPOCH], keep="last").sort_values(M.EPOCH)
        trial_id = str(frame["trial_id"].iloc[-1]) if "trial_id" in frame and not frame.empty else folder.name[11:]
        status = trial_status(frame, (folder / "error.txt").exists(), "", MAX_EPOCHS)
        if frame.empty:
            frame = pd.DataFrame({M.EPOCH: [pd.NA]})
        frame = frame.drop(columns="trial_id", errors="ignore")
        params = json.loads((folder / "params.json").read_text())
        config = {CONFIG_PREFIX + k: json.dumps(v) if isinstance(v, (list, dict)) else v
                  for k, v in resolved_config(record["method"], params, folder).items()}
        trials.append({"experiment": str(path.resolve()), "method": record["method"], "dataset": record["dataset"],
                       "trial_id": trial_id, "trial_dir": folder.name, "status": status, **config})
        rows.append(frame.assign(trial_dir=folder.name))
    epochs = pd.concat(rows, ignore_index=True)
    out = pd.DataFrame(trials).merge(epochs, on="trial_dir", how="right")
    front = ["experiment", "method", "dataset", "trial_id", "trial_dir", "status", M.EPOCH]
    reported = [c for c in epochs.columns if c not in front]
    return out[front + reported + [c for c in out.columns if c not in front and c not in reported]]


trial_spec = st.fixed_dictionaries({
    "epochs": st.lists(st.integers(1, MAX_EPOCHS), max_size=5),  # in any order, repeated: a resumed trial
    "extra_column": st.booleans(),  # another header: another read
    "diverged": st.booleans(),
    "errored": st.booleans(),
    "damaged": st.booleans(),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(trial_spec, min_size=1, max_size=6))
def test_the_loader_gives_what_reading_each_trial_on_its_own_gave(tmp_path_factory, specs):
    path = tmp_path_factory.mktemp("exp") / "exp"
    shutil.copytree(EXPERIMENT_0_1_0, path)
    record = json.loads((path / "tunelab.json").read_text())
    del record[FINAL_STATUSES]  # statuses from the rows
    record["scheduler"]["max_t"] = MAX_EPOCHS  # so that some trials finish
    (path / "tunelab.json").write_text(json.dumps(record))
    template = (path / TRIAL / "progress.csv").read_text().splitlines()
    header, row = template[0].split(","), template[1].split(",")
    params = (path / TRIAL / "params.json").read_text()
    shutil.rmtree(path / TRIAL)
    for k, spec in enumerate(specs):
        trial_id = f"{k:08x}"
        folder = path / f"classifier_{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(params)
        names = header + (["extra"] if spec["extra_column"] else [])
        lines = [",".join(names)]
        for n, epoch in enumerate(spec["epochs"]):
            values = dict(zip(header, row), epoch=str(epoch), trial_id=trial_id, diverged=str(int(spec["diverged"])))
            values["val/acc"] = str(0.1 * n)
            lines.append(",".join([values[h] for h in header] + (["x"] if spec["extra_column"] else [])))
        text = "\n".join(lines) + "\n" if spec["epochs"] else ""
        (folder / "progress.csv").write_text("bad,\n1,2,3\n" if spec["damaged"] else text)
        if spec["errored"]:
            (folder / "error.txt").write_text("boom")
    if all(spec["damaged"] for spec in specs):
        return  # nothing readable: a case of its own (the report refuses it)

    loaded = load_experiment(path)

    pd.testing.assert_frame_equal(loaded, _reference(path))


@pytest.mark.parametrize("damage,expected", [
    ("epoch,val/acc\n1,0.5\n1.5,0.6\n", "has an 'epoch' value that is no whole number from 0 to 1e+09"),
    ("epoch,val/acc\n1,0.5\nnan,0.6\n", "has an 'epoch' value that is no whole number from 0 to 1e+09"),
    ("epoch,val/acc\n1,0.5\ninf,0.6\n", "has an 'epoch' value that is no whole number from 0 to 1e+09"),
    ("epoch,val/acc\n1,0.5\n1e300,0.6\n", "has an 'epoch' value that is no whole number from 0 to 1e+09"),
    ("epoch,val/acc\n1,0.5\n99999999999999999999,0.6\n", "has an 'epoch' value that is no whole number from 0 to"),
    ("epoch,val/acc\n1,0.5\n2,\"0.6\n", "is unreadable (Error)"),  # cut inside a quoted field
    ("epoch,val/acc\n1,0.5\n2,\"0\"6\n", "is unreadable (Error)"),
    ("epoch,val/acc\n1,0.5\n2\n", "line 3 has 1 fields, the header 2"),
    ("\nepoch,val/acc\n1,0.5\n", "starts with an empty line"),
])
def test_a_damaged_trial_is_skipped_with_a_warning_and_the_others_are_read(tmp_path, capsys, damage, expected):
    path = tmp_path / "exp"
    shutil.copytree(EXPERIMENT_0_1_0, path)
    shutil.copytree(path / TRIAL, path / "classifier_0000beef")
    (path / "classifier_0000beef" / "progress.csv").write_text(damage)

    loaded = load_experiment(path)

    assert set(loaded["trial_dir"]) == {TRIAL}
    assert f"trial classifier_0000beef of {str(path.resolve())!r} skipped: progress.csv {expected}" \
        in " ".join(capsys.readouterr().err.split())


def test_a_trial_cut_inside_a_quote_is_skipped_and_the_trials_of_its_header_are_read(tmp_path, capsys):
    """Read with the others of its header, a quote left open at a file's end would swallow the
    next trial's rows (found by a hostile try-out: a traceback, or a healthy trial dropped)."""
    path = tmp_path / "exp"
    shutil.copytree(EXPERIMENT_0_1_0, path)
    lines = (path / TRIAL / "progress.csv").read_text().splitlines()
    for name in ("classifier_0000beef", "classifier_0000feed"):
        shutil.copytree(path / TRIAL, path / name)
    cut = lines[2].rsplit(",", 1)[0] + ',"1'  # its last field opened, never closed: as many fields as the header
    (path / "classifier_0000beef" / "progress.csv").write_text("\n".join(lines[:2] + [cut]))

    loaded = load_experiment(path)

    assert set(loaded["trial_dir"]) == {TRIAL, "classifier_0000feed"}
    assert (loaded["trial_dir"] == TRIAL).sum() == (loaded["trial_dir"] == "classifier_0000feed").sum() == len(lines) - 1
    assert "trial classifier_0000beef" in capsys.readouterr().err
