"""Ray state files a killed driver cut short: the searcher's snapshot is rebuilt from the trials,
anything else stops `resume` with one line. The rebuild is checked against the study the same
searcher built live (the ground truth), without a Ray run; the real resume is in
test_reliability_ray.py."""
import json
import math
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from tunelab.search_spaces import SPACES
from tunelab.search_spaces.base import Choice, FloatRange
from tunelab.core.errors import ConfigError
from tunelab.searcher_plugins import searcher_for
from tunelab.ray_state import RayTrial, check_and_repair, metric_by_step, read_results
from tunelab.search import make_search

PLAIN = {"lr": FloatRange(1e-3, 1e-1, log=True, unit="u", reason="r"), "opt": Choice(("a", "b"), unit="u", reason="r")}
# (trial id, per-epoch values, Ray status at the kill, diverged) with max_t = 3
HISTORY = [("a", [0.5, 0.9, 0.8], "TERMINATED", 0),   # full budget: COMPLETE with 0.9
           ("b", [0.3], "TERMINATED", 0),             # stopped by ASHA: PRUNED
           ("c", [0.2, 0.1], "TERMINATED", 1),        # diverged: PRUNED
           ("d", [0.4], "ERROR", 0),                  # raised: FAIL
           ("e", [0.6, 0.7], "RUNNING", 0)]           # still to run at the kill: RUNNING


def _searcher(space):
    searcher, _ = make_search(space, "val/acc", "max", max_t=3, seed=0, time_attr="epoch", n_startup_trials=2)
    return searcher


def _live(space):
    """The study the searcher built while the trials ran, and the trials as Ray's files record them."""
    searcher, trials = _searcher(space), []
    for trial_id, values, status, diverged in HISTORY:
        config = searcher.suggest(trial_id)
        results = [{"val/acc": v, "epoch": e, "diverged": diverged} for e, v in enumerate(values, start=1)]
        for result in results if status != "TERMINATED" else results[:-1]:
            searcher.on_trial_result(trial_id, result)
        if status == "TERMINATED":  # Ray hands a finished trial's last result to on_trial_complete only
            searcher.on_trial_complete(trial_id, results[-1])
        elif status == "ERROR":
            searcher.on_trial_complete(trial_id, None, error=True)
        trials.append(RayTrial(trial_id, status, {**config, "seed": 0}, results, f"classifier_{trial_id}"))
    return searcher, trials


def _view(study):
    return [(t.state, t.value, t.params, t.intermediate_values, t.user_attrs["ray_trial_id"]) for t in study.trials]


@pytest.mark.parametrize("space", [PLAIN, SPACES["classifier"]], ids=["plain", "conditional"])
def test_rebuilt_study_is_the_one_the_searcher_built_live(space):
    live, trials = _live(space)
    rebuilt = _searcher(space)
    rebuilt.rebuild(trials)
    assert _view(rebuilt._ot_study) == _view(live._ot_study)
    assert [t.state for t in rebuilt._ot_study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED,
                                                           TrialState.FAIL, TrialState.RUNNING]
    assert rebuilt._completed_trials == {"a", "b", "c", "d"} and set(rebuilt._ot_trials) == {"a", "b", "c", "d", "e"}
    # the running trial goes on where it stopped: its next epoch is recorded, its end told once
    rebuilt.on_trial_result("e", {"val/acc": 0.75, "epoch": 3})
    rebuilt.on_trial_complete("e", {"val/acc": 0.75, "epoch": 3})
    last = rebuilt._ot_study.trials[-1]
    assert last.state == TrialState.COMPLETE and last.value == 0.75 and last.intermediate_values == {1: 0.6, 2: 0.7, 3: 0.75}
    assert rebuilt.suggest("f") is not None  # and the search goes on


def test_rebuild_against_a_persistent_study_adds_only_what_it_lacks_and_fails_lost_runs(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    live, _ = make_search(PLAIN, "val/acc", "max", max_t=3, seed=0, time_attr="epoch", n_startup_trials=2,
                          storage=storage, study_name="s")
    live.suggest("x")
    live.on_trial_result("x", {"val/acc": 0.5, "epoch": 1})
    live.on_trial_complete("x", {"val/acc": 0.5, "epoch": 1})
    live.suggest("lost")  # asked for after Ray's last snapshot: unknown to Ray
    config = live.suggest("y")
    live.on_trial_result("y", {"val/acc": 0.4, "epoch": 1})
    restarted, _ = make_search(PLAIN, "val/acc", "max", max_t=3, seed=0, time_attr="epoch", n_startup_trials=2,
                               storage=storage, study_name="s")
    restarted.rebuild([RayTrial("x", "TERMINATED", {}, [{"val/acc": 0.5, "epoch": 1}], "classifier_x"),
                       RayTrial("y", "RUNNING", config, [{"val/acc": 0.4, "epoch": 1}], "classifier_y")])
    states = {t.user_attrs["ray_trial_id"]: t.state for t in restarted._ot_study.trials}
    assert states == {"x": TrialState.PRUNED, "lost": TrialState.FAIL, "y": TrialState.RUNNING}
    assert restarted._ot_study.trials[2].intermediate_values == {1: 0.4}  # not reported twice


def _experiment(tmp_path, space=PLAIN):
    """A folder with Ray's state files as a search of `space` leaves them (the searcher pickled in tuner.pkl)."""
    folder = tmp_path / "exp"
    folder.mkdir()
    live, trials = _live(space)
    session = "2026-01-01_00-00-00"
    with open(folder / "tuner.pkl", "wb") as handle:
        pickle.dump({"_tune_config": _Config(_searcher(space))}, handle)
    trial_data = [[json.dumps({"trial_id": t.trial_id, "status": t.status, "config": t.config,
                               "relative_logdir": t.dirname}), "{}"] for t in trials]
    (folder / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": trial_data}))
    with open(folder / f"search_gen_state-{session}.json", "wb") as handle:
        pickle.dump({"counter": len(trials)}, handle)
    live.save_to_dir(str(folder), session_str=session)
    for t in trials:
        (folder / t.dirname).mkdir()
        (folder / t.dirname / "result.json").write_text("".join(json.dumps(r) + "\n" for r in t.results))
    return folder, live, session


class _Config:
    def __init__(self, search_alg):
        self.search_alg = search_alg


def _cut(file):
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def test_a_cut_short_searcher_snapshot_is_rebuilt_and_kept_aside(tmp_path, capsys):
    folder, live, session = _experiment(tmp_path)
    snapshot = folder / f"searcher-state-{session}.pkl"
    _cut(snapshot)
    cut_bytes = snapshot.read_bytes()
    check_and_repair(str(folder), searcher_for("optuna"))
    assert (folder / f"searcher-state-{session}.pkl.unreadable").read_bytes() == cut_bytes  # never deleted
    restored = _searcher(PLAIN)
    restored.restore(str(snapshot))  # what Ray does with it
    assert _view(restored._ot_study) == _view(live._ot_study)
    assert "rebuilt it from the 5 trial(s) on disk" in capsys.readouterr().err
    check_and_repair(str(folder), searcher_for("optuna"))  # a readable snapshot is left alone
    assert capsys.readouterr().err == ""
    _cut(snapshot)  # cut again: the first cut copy is not overwritten
    check_and_repair(str(folder), searcher_for("optuna"))
    assert (folder / f"searcher-state-{session}.pkl.unreadable.1").exists()
    assert (folder / f"searcher-state-{session}.pkl.unreadable").read_bytes() == cut_bytes


def test_a_snapshot_missing_beside_the_generator_state_is_rebuilt(tmp_path):
    folder, live, session = _experiment(tmp_path)
    (folder / f"searcher-state-{session}.pkl").unlink()
    check_and_repair(str(folder), searcher_for("optuna"))
    restored = _searcher(PLAIN)
    restored.restore(str(folder / f"searcher-state-{session}.pkl"))
    assert _view(restored._ot_study) == _view(live._ot_study)


@pytest.mark.parametrize("pattern", ["experiment_state-*.json", "search_gen_state-*.json", "tuner.pkl"])
def test_other_state_cut_short_stops_resume_with_one_line_naming_it(tmp_path, pattern):
    folder, _, _ = _experiment(tmp_path)
    file = next(folder.glob(pattern))
    _cut(file)
    with pytest.raises(ConfigError) as error:
        check_and_repair(str(folder), searcher_for("optuna"))
    message = str(error.value)
    assert "\n" not in message and file.name in message and "unreadable" in message and "tunelab report" in message
    assert file.exists() and not list(folder.glob("*.unreadable*"))  # nothing changed


def test_result_lines_cut_short_or_not_objects_are_skipped(tmp_path):
    file = tmp_path / "result.json"
    file.write_text('{"val/acc": 0.5, "epoch": 1}\n[1, 2]\n{"val/acc": NaN, "epoch": 2}\n{"val/acc": 0.7, "ep')
    rows = read_results(file)
    assert len(rows) == 2
    assert metric_by_step(rows, "val/acc", "epoch") == {1: 0.5}
    assert read_results(tmp_path / "missing.json") == [] and read_results(tmp_path) == []


_VALUE = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=3)
_ROW = st.fixed_dictionaries({"val/acc": _VALUE, "epoch": _VALUE}, optional={"x": _VALUE})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400) | st.lists(_ROW, max_size=6).map(
    lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()))
def test_any_result_file_reads_to_rows_and_finite_values(tmp_path, content):
    file = tmp_path / "result.json"
    file.write_bytes(content)
    rows = read_results(file)
    assert all(isinstance(row, dict) for row in rows)
    values = metric_by_step(rows, "val/acc", "epoch")
    assert all(isinstance(step, int) and isinstance(v, float) and math.isfinite(v) for step, v in values.items())


def _checkpoint_state(folder, trial_id, scores, status="RUNNING"):
    """Ray's bookkeeping of one trial that kept checkpoints with these val/acc scores (num_to_keep 2)."""
    from ray.train import Checkpoint, CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = _CheckpointManager(
        CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val/acc", checkpoint_score_order="max"))
    for index, score in enumerate(scores):
        path = folder / trial_id / f"checkpoint_{index:06d}"
        path.mkdir(parents=True)
        metadata.checkpoint_manager.register_checkpoint(_TrainingResult(Checkpoint(str(path)), {"val/acc": score}))
    return [json.dumps({"trial_id": trial_id, "status": status}), metadata.get_json_state()]


def _managers(folder):
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    state = json.loads(next(folder.glob("experiment_state-*.json")).read_text())
    return {json.loads(t)["trial_id"]: _TrainingRunMetadata.from_json_state(m).checkpoint_manager
            for t, m in state["trial_data"]}


def _lagging_snapshot(folder):
    """Ray kept checkpoint 1 (best, 0.6), 3 (second best, 0.5) and 4 (the latest, 0.1); the trial deleted 3
    after the snapshot. A finished trial lost one too."""
    import shutil

    trial_data = [_checkpoint_state(folder, "run", [0.2, 0.6, 0.3, 0.5, 0.1]),
                  _checkpoint_state(folder, "done", [0.2, 0.6], status="TERMINATED")]
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    shutil.rmtree(folder / "run" / "checkpoint_000003")
    shutil.rmtree(folder / "done" / "checkpoint_000000")
    return folder


def _register(manager, folder, index, score):
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    path = folder / "run" / f"checkpoint_{index:06d}"
    path.mkdir()
    manager.register_checkpoint(_TrainingResult(Checkpoint(str(path)), {"val/acc": score}))


def test_checkpoints_a_lagging_snapshot_lists_but_the_disk_lost_are_forgotten_so_ray_can_evict(tmp_path):
    from tunelab.ray_state import drop_lost_checkpoints

    untouched = _lagging_snapshot(tmp_path / "as_ray_left_it")
    with pytest.raises(FileNotFoundError):  # what Ray hit on resume: evicting the lost checkpoint
        _register(_managers(untouched)["run"], untouched, 5, 0.7)

    folder = _lagging_snapshot(tmp_path / "exp")
    assert drop_lost_checkpoints(folder, {"run"}) == {"run": 1}
    state_file = next(folder.glob("experiment_state-*.json"))
    written = state_file.stat().st_mtime_ns
    assert drop_lost_checkpoints(folder, {"run"}) == {}
    assert state_file.stat().st_mtime_ns == written  # nothing more lost: the file is not rewritten
    managers = _managers(folder)
    listed = lambda manager: sorted(Path(r.checkpoint.path).name for r in manager._checkpoint_results)  # noqa: E731
    assert listed(managers["run"]) == ["checkpoint_000001", "checkpoint_000004"]
    assert Path(managers["run"].latest_checkpoint_result.checkpoint.path).name == "checkpoint_000004"
    assert listed(managers["done"]) == ["checkpoint_000000", "checkpoint_000001"]  # not resumed: left as it was
    _register(managers["run"], folder, 5, 0.7)  # Ray's own eviction now finds every folder it deletes
    _register(managers["run"], folder, 6, 0.8)
    assert sorted(p.name for p in (folder / "run").iterdir()) == ["checkpoint_000005", "checkpoint_000006"]


def test_a_confirmations_file_with_binary_or_cut_lines_keeps_only_whole_rows(tmp_path):
    """compare's confirmations.jsonl and Ray's result.json share one reader: a kill's cut line or
    binary garbage is skipped, never a traceback."""
    from tunelab.compare_state import CONFIRMATIONS_FILE, read_confirmations

    (tmp_path / CONFIRMATIONS_FILE).write_bytes(b'{"method": "a", "seed": 0}\n\xff\xfe\x00garbage\n{"method": "a", "se')
    assert read_confirmations(tmp_path) == [{"method": "a", "seed": 0}]


def test_a_cut_snapshot_of_a_searcher_that_cannot_rebuild_it_stops_resume_with_one_line(tmp_path):
    folder, _, session = _experiment(tmp_path)
    _cut(folder / f"searcher-state-{session}.pkl")
    with pytest.raises(ConfigError) as error:
        check_and_repair(str(folder), searcher_for("random"))
    message = str(error.value)
    assert "\n" not in message and "--search random cannot rebuild it" in message and "tunelab tune" in message


# ----------------------------------------------------------------------------- free_slots_of_ended_trials

def _trial_function(config):  # a trainable Ray's generators can name; never run here
    pass


def _generators():
    """(a fresh search generator of each kind Tune restores, made identically), under --max-concurrent 1."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.search_generator import SearchGenerator

    def random_search():
        return BasicVariantGenerator(max_concurrent=1)

    def limited_searcher():
        space = {"a": tune.uniform(0, 1)}
        return SearchGenerator(ConcurrencyLimiter(OptunaSearch(space, metric="loss", mode="min", seed=0),
                                                  max_concurrent=1))

    return {"random": random_search, "searcher": limited_searcher}


def _ray_experiment(folder: Path):
    from ray import tune
    from ray.tune.experiment import Experiment

    return Experiment("x", _trial_function, config={"a": tune.uniform(0, 1)}, num_samples=3,
                      storage_path=str(folder))


def _write_experiment_state(folder: Path, statuses: dict[str, str]) -> None:
    entries = [[json.dumps({"trial_id": trial_id, "status": status, "config": {}, "relative_logdir": ""}), "{}"]
               for trial_id, status in statuses.items()]
    (folder / "experiment_state-s1.json").write_text(json.dumps({"trial_data": entries}))


@pytest.mark.parametrize("kind", ["random", "searcher"])
@pytest.mark.parametrize("recorded_as", ["TERMINATED", "ERROR", None])  # None: created after the snapshot
def test_a_slot_held_for_a_trial_the_experiment_state_has_ended_is_freed_so_resume_does_not_wait(
        tmp_path, kind, recorded_as):
    """A generator snapshot copied before (or after) the experiment state counts as live a trial
    the experiment state has ended or never recorded; Ray's restored generator then never suggests
    again (resume hung). Real Ray generators save and restore here."""
    from tunelab.late_trials import free_slots_of_ended_trials

    make = _generators()[kind]
    generator = make()
    generator.add_configurations([_ray_experiment(tmp_path)])
    trial = generator.next_trial()
    assert trial is not None and generator.next_trial() is None  # its one slot is taken
    generator.save_to_dir(str(tmp_path), "s1")
    _write_experiment_state(tmp_path, {} if recorded_as is None else {trial.trial_id: recorded_as})

    assert free_slots_of_ended_trials(str(tmp_path)) == [trial.trial_id]

    restored = make()
    restored.add_configurations([_ray_experiment(tmp_path)])
    restored.restore_from_dir(str(tmp_path))
    assert restored.next_trial() is not None


@pytest.mark.parametrize("kind", ["random", "searcher"])
@pytest.mark.parametrize("status", ["RUNNING", "PENDING", "PAUSED"])
def test_a_slot_of_a_trial_that_will_run_again_is_kept(tmp_path, kind, status):
    from tunelab.late_trials import free_slots_of_ended_trials

    make = _generators()[kind]
    generator = make()
    generator.add_configurations([_ray_experiment(tmp_path)])
    trial = generator.next_trial()
    generator.save_to_dir(str(tmp_path), "s1")
    saved = {p.name: p.read_bytes() for p in tmp_path.glob("*-state-*")}
    _write_experiment_state(tmp_path, {trial.trial_id: status})

    assert free_slots_of_ended_trials(str(tmp_path)) == []
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*-state-*") if p.name in saved} == saved
    restored = make()
    restored.add_configurations([_ray_experiment(tmp_path)])
    restored.restore_from_dir(str(tmp_path))
    assert restored.next_trial() is None  # the trial resumes in its slot


def _keep_whole_snapshot(folder):
    """What KeepWholeSnapshot does at each Ray snapshot, with `folder` as both Ray's staging folder
    and the experiment (a stand-in for the trial's storage: the Ray run is in test_tune_ray.py)."""
    from types import SimpleNamespace

    import pyarrow.fs

    from tunelab.whole_snapshot import keep

    storage = SimpleNamespace(experiment_driver_staging_path=str(folder), experiment_fs_path=str(folder),
                              storage_filesystem=pyarrow.fs.LocalFileSystem())
    keep(SimpleNamespace(storage=storage))


@pytest.mark.parametrize("pattern", ["experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl"])
def test_a_snapshot_file_cut_short_is_put_back_from_the_whole_copy_and_kept_aside(tmp_path, capsys, pattern):
    folder, _, _ = _experiment(tmp_path)
    _keep_whole_snapshot(folder)
    file = next(folder.glob(pattern))
    whole = file.read_bytes()
    _cut(file)
    cut_bytes = file.read_bytes()
    check_and_repair(str(folder), searcher_for("optuna"))
    assert file.read_bytes() == whole
    assert (folder / f"{file.name}.unreadable").read_bytes() == cut_bytes  # never deleted
    message = capsys.readouterr().err
    assert f"Ray's {file.name} (kept as {file.name}.unreadable) was cut short" in message
    assert "put back the whole snapshot" in message


def test_a_whole_copy_of_another_session_or_one_not_ours_changes_nothing(tmp_path):
    import tarfile

    from tunelab.ray_state import SNAPSHOT_FILE

    folder, _, session = _experiment(tmp_path)
    _keep_whole_snapshot(folder)
    state = folder / f"experiment_state-{session}.json"
    _cut(state)
    later = folder / "experiment_state-2026-02-02_00-00-00.json"  # a later session: the copy is not of it
    later.write_bytes(state.read_bytes())
    with pytest.raises(ConfigError, match=f"Ray's {later.name} is unreadable"):
        check_and_repair(str(folder), searcher_for("optuna"))
    later.unlink()
    bundle = folder / SNAPSHOT_FILE
    for member in ("../escape.json", f"search_gen_state-{session}.json"):  # a path out; no experiment state
        bundle.unlink()
        with tarfile.open(bundle, "w") as tar:
            tar.add(folder / f"search_gen_state-{session}.json", arcname=member)
        files = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
        with pytest.raises(ConfigError, match=f"Ray's {state.name} is unreadable"):
            check_and_repair(str(folder), searcher_for("optuna"))
        assert sorted((p.name, p.stat().st_size) for p in folder.iterdir()) == files
    assert not (tmp_path / "escape.json").exists()
    bundle.unlink()
    bundle.symlink_to(tmp_path / "elsewhere.tar")  # a link planted in its place is not read
    with pytest.raises(ConfigError, match=f"Ray's {state.name} is unreadable"):
        check_and_repair(str(folder), searcher_for("optuna"))


def test_the_whole_copy_is_replaced_whole_never_written_through_a_link(tmp_path):
    from tunelab.ray_state import SNAPSHOT_FILE

    folder, _, session = _experiment(tmp_path)
    outside = tmp_path / "not-ours.tar"
    outside.write_bytes(b"theirs")
    (folder / SNAPSHOT_FILE).symlink_to(outside)
    _keep_whole_snapshot(folder)
    assert outside.read_bytes() == b"theirs" and not (folder / SNAPSHOT_FILE).is_symlink()
    import tarfile

    with tarfile.open(folder / SNAPSHOT_FILE) as tar:
        assert sorted(tar.getnames()) == sorted(p.name for p in folder.glob(f"*{session}*"))


def test_a_whole_copy_that_cannot_be_written_back_stops_resume_in_one_line_with_the_cut_file_in_place(
        tmp_path, monkeypatch):
    import tunelab.ray_state as ray_state

    folder, _, session = _experiment(tmp_path)
    _keep_whole_snapshot(folder)
    state = folder / f"experiment_state-{session}.json"
    _cut(state)
    cut_bytes = state.read_bytes()

    def read_only(path, write):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(ray_state, "atomic_write_bytes", read_only)
    with pytest.raises(ConfigError) as error:
        check_and_repair(str(folder), searcher_for("optuna"))
    message = str(error.value)
    assert "\n" not in message and state.name in message and "could not be put back" in message
    assert "Read-only file system" in message
    assert state.read_bytes() == cut_bytes  # still where resume looks for it, for the next try
