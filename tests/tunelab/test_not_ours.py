"""Never touch what is not ours: --overwrite deletes only what tunelab and Ray wrote, bookkeeping
files never follow a planted symlink, an Optuna study belongs to one experiment, and --overwrite
retires the old experiment's MLflow runs. Real files, real Optuna, real MLflow (sqlite stores)."""
import sqlite3
from pathlib import Path

import optuna
import pytest

from tunelab.core.record import write_record
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import open_no_follow
from tunelab.search_plan import resolve_space
from tunelab.summaries import experiment_record
from tunelab.tune_options import TuneOptions, fixed_values
from tunelab.experiment_lock import ExperimentLock
from tunelab.experiments import check_free, prepare_folder
from tunelab.study import OWNER_ATTR, check_optuna_storage, claim_study, replace_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write_experiment(folder: Path, method: str = "classifier") -> None:
    """A tunelab record and Ray Tune's files as a finished search leaves them."""
    opts = TuneOptions(method=method, storage=str(folder.parent), name=folder.name)
    fixed = fixed_values(opts)
    folder.mkdir(parents=True)
    write_record(folder, experiment_record(opts, folder.name, str(folder), fixed, resolve_space(opts, fixed), []))
    for name in ("tuner.pkl", ".validate_storage_marker", "experiment_state-2026-12-03_07-21-40.json",
                 "search_gen_state-2026-12-03_07-21-40.json", "searcher-state-2026-12-03_07-21-40.pkl",
                 "experiment_state-2026-12-03_07-00-00.json.unreadable", ".tunelab-ray-snapshot.tar",
                 "..tunelab-ray-snapshot.tar.k3x9q1"):  # tunelab's whole snapshot, and a kill's temp file of it
        (folder / name).write_text("ray")
    for trial in (f"{method}_82bc9748", f"{method}_a1b2c_00001"):
        (folder / trial / "checkpoint_000000").mkdir(parents=True)
        (folder / trial / "checkpoint_000000" / "checkpoint.pt").write_bytes(b"weights")
        for name in ("params.json", "params.pkl", "result.json", "progress.csv", "events.out.tfevents.1.vm"):
            (folder / trial / name).write_text("ray")
    run = folder / "wandb" / "offline-run-20261203_072140-82bc9748"
    run.mkdir(parents=True)
    (run / "run-82bc9748.wandb").write_bytes(b"w")
    (folder / "wandb" / "latest-run").symlink_to(run.name)


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


# ----------------------------------------------------------------------------- --overwrite

def test_overwrite_of_a_pure_experiment_leaves_an_empty_folder(tmp_path):
    experiment = tmp_path / "runs" / "exp"
    write_experiment(experiment)
    prepare_folder(str(experiment), overwrite=True)
    assert experiment.is_dir() and list(experiment.iterdir()) == []


def test_overwrite_deletes_only_what_tunelab_wrote_and_says_what_it_kept(tmp_path, capsys):
    experiment = tmp_path / "runs" / "exp"
    write_experiment(experiment)
    outside = tmp_path / "precious.txt"
    outside.write_text("precious")
    (experiment / "thesis.tex").write_text("mine")  # a user's file beside the trials
    (experiment / "classifier_82bc9748" / "notes.md").write_text("mine")  # ... inside a trial folder
    (experiment / "classifier_a1b2c_00001" / "error.txt").mkdir()  # a folder named as Ray's file: not Ray's
    (experiment / "classifier_a1b2c_00001" / "error.txt" / "draft.md").write_text("mine")
    (experiment / "plots").mkdir()  # ... a folder of the user's, even an empty one
    (experiment / "classifier_zzzz").mkdir()  # not a Ray trial id: not a trial folder
    (experiment / "classifier_zzzz" / "data.bin").write_bytes(b"mine")
    (experiment / "tuner.pkl").unlink()
    (experiment / "tuner.pkl").symlink_to(outside)  # a link where Ray's file goes: removed? never followed
    (experiment / "wandb" / "mine.txt").write_text("mine")
    neighbour = tmp_path / "runs" / "exp2"  # a sibling experiment: its files match the same patterns
    write_experiment(neighbour)
    (tmp_path / "runs" / ".tunelab-ray-snapshot.tar").write_text("mine")  # ... as does one in the storage
    before = snapshot(neighbour)
    prepare_folder(str(experiment), overwrite=True)
    assert snapshot(neighbour) == before and (tmp_path / "runs" / ".tunelab-ray-snapshot.tar").read_text() == "mine"
    left = sorted(str(p.relative_to(experiment)) for p in experiment.rglob("*"))
    assert left == ["classifier_82bc9748", "classifier_82bc9748/notes.md", "classifier_a1b2c_00001",
                    "classifier_a1b2c_00001/error.txt", "classifier_a1b2c_00001/error.txt/draft.md", "classifier_zzzz",
                    "classifier_zzzz/data.bin", "plots", "thesis.tex", "tuner.pkl", "wandb", "wandb/mine.txt"]
    assert outside.read_text() == "precious" and (experiment / "tuner.pkl").is_symlink()
    err = capsys.readouterr().err
    assert "--overwrite: kept 7 item(s) that tunelab did not write" in err and "thesis.tex" in err


@pytest.mark.parametrize("content, reason", [
    ('{"precious": true}', "lacks the field 'format'"),
    ("not json", "is not valid JSON"),
])
def test_overwrite_of_a_folder_with_a_foreign_tunelab_json_is_refused_untouched(tmp_path, content, reason):
    folder = tmp_path / "runs" / "exp"
    folder.mkdir(parents=True)
    (folder / "tunelab.json").write_text(content)
    (folder / "tuner.pkl").write_text("someone else's")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="--overwrite refused: .* is not a tunelab experiment") as refused:
        prepare_folder(str(folder), overwrite=True)
    assert reason in str(refused.value) and "\n" not in str(refused.value)
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_tunelab_json_that_is_a_symlink_to_a_real_record(tmp_path):
    real = tmp_path / "elsewhere" / "exp"
    write_experiment(real)
    folder = tmp_path / "runs" / "exp"
    folder.mkdir(parents=True)
    (folder / "tunelab.json").symlink_to(real / "tunelab.json")
    (folder / "tuner.pkl").write_text("someone else's")
    with pytest.raises(ConfigError, match="no tunelab.json"):
        check_free(str(folder), overwrite=True)
    assert (folder / "tuner.pkl").exists()


# ----------------------------------------------------------------------------- planted symlinks

def test_a_symlink_planted_at_the_lock_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    storage = tmp_path / "runs"
    storage.mkdir()
    (storage / ".exp.lock").symlink_to(target)
    with pytest.raises(ConfigError, match=r"lock file .*\.exp\.lock' is a symbolic link"):
        check_free(str(storage / "exp"), overwrite=False)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        ExperimentLock(str(storage / "exp")).acquire()  # the open itself: O_NOFOLLOW
    assert target.read_text() == "precious"


def test_a_dangling_symlink_at_the_lock_creates_nothing(tmp_path):
    storage = tmp_path / "runs"
    storage.mkdir()
    (storage / ".exp.lock").symlink_to(tmp_path / "created-by-a-follower")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        ExperimentLock(str(storage / "exp")).acquire()
    assert not (tmp_path / "created-by-a-follower").exists()


def test_a_fifo_at_the_lock_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / ".exp.lock")
    with pytest.raises(ConfigError, match="is not a regular file"):
        ExperimentLock(str(tmp_path / "exp")).acquire()


def test_open_no_follow_truncates_only_a_regular_file_of_its_own(tmp_path):
    import os

    log = tmp_path / "driver.log"
    log.write_text("old")
    os.close(open_no_follow(log, "log", truncate=True))
    assert log.read_text() == ""
    (tmp_path / "link.log").symlink_to(log)
    log.write_text("kept")
    with pytest.raises(ConfigError, match="link.log' is a symbolic link"):
        open_no_follow(tmp_path / "link.log", "log", truncate=True)
    assert log.read_text() == "kept"


# ----------------------------------------------------------------------------- Optuna studies

def tune_options(tmp_path: Path, db: Path, overwrite: bool = False) -> TuneOptions:
    return TuneOptions(method="classifier", storage=str(tmp_path / "runs"), name="exp",
                       optuna_storage=f"sqlite:///{db}", overwrite=overwrite)


def test_a_study_is_created_owned_by_its_experiment_and_refused_to_another(tmp_path):
    db = tmp_path / "studies.db"
    mine, theirs = str(tmp_path / "runs" / "exp"), str(tmp_path / "other" / "exp")
    claim_study(tune_options(tmp_path, db), "exp", mine)
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{db}")
    assert study.user_attrs[OWNER_ATTR] == mine and study.direction == optuna.study.StudyDirection.MAXIMIZE
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=f"study 'exp' belongs to experiment '{mine}', not to this one "
                                              f"\\('{theirs}'\\)"):
            check_optuna_storage(tune_options(tmp_path, db, overwrite), "exp", theirs)
        with pytest.raises(ConfigError, match="belongs to experiment"):
            replace_study(tune_options(tmp_path, db, overwrite=True), "exp", theirs)
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")] == ["exp"]


def test_overwrite_replaces_the_experiments_own_study(tmp_path, capsys):
    db = tmp_path / "studies.db"
    mine = str(tmp_path / "runs" / "exp")
    claim_study(tune_options(tmp_path, db), "exp", mine)
    with pytest.raises(ConfigError, match="already holds a study named 'exp'.*--overwrite"):
        check_optuna_storage(tune_options(tmp_path, db), "exp", mine)
    check_optuna_storage(tune_options(tmp_path, db, overwrite=True), "exp", mine)
    replace_study(tune_options(tmp_path, db, overwrite=True), "exp", mine)
    assert optuna.get_all_study_summaries(f"sqlite:///{db}") == []
    assert f"deleted study 'exp' of {mine}" in capsys.readouterr().err


def test_a_study_nobody_owns_is_never_deleted(tmp_path):
    db = tmp_path / "studies.db"
    optuna.create_study(study_name="exp", storage=f"sqlite:///{db}")
    with pytest.raises(ConfigError, match="no tunelab experiment owns .* even under --overwrite"):
        check_optuna_storage(tune_options(tmp_path, db, overwrite=True), "exp", str(tmp_path / "runs" / "exp"))
    with pytest.raises(ConfigError, match="no tunelab experiment owns"):
        replace_study(tune_options(tmp_path, db, overwrite=True), "exp", str(tmp_path / "runs" / "exp"))
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")] == ["exp"]


def test_a_database_of_another_application_gets_no_optuna_tables(tmp_path):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = db.read_bytes()
    with pytest.raises(ConfigError, match=r"holds tables of another application \(invoices\) and no Optuna schema"):
        check_optuna_storage(tune_options(tmp_path, db), "exp", str(tmp_path / "runs" / "exp"))
    assert db.read_bytes() == before
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"invoices"}


def test_an_empty_database_file_is_fine_for_a_new_study(tmp_path):
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    check_optuna_storage(tune_options(tmp_path, db), "exp", str(tmp_path / "runs" / "exp"))


# ----------------------------------------------------------------------------- MLflow runs

def test_overwrite_marks_deleted_only_the_old_experiments_mlflow_runs(tmp_path, capsys):
    from mlflow import MlflowClient

    from tunelab.tracking import retire_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("exp")
    mine, theirs = str(tmp_path / "runs" / "exp"), str(tmp_path / "other" / "exp")
    old = [client.create_run(experiment_id, tags={"experiment": mine}).info.run_id for _ in range(2)]
    other = client.create_run(experiment_id, tags={"experiment": theirs}).info.run_id
    assert sorted(retire_runs(uri, "exp", mine)) == sorted(old)
    reader = MlflowClient(tracking_uri=uri)
    assert [reader.get_run(r).info.lifecycle_stage for r in old] == ["deleted", "deleted"]
    assert reader.get_run(other).info.lifecycle_stage == "active"
    err = capsys.readouterr().err
    assert "marked 2 MLflow run(s) of the replaced" in err and all(r in err for r in old) and other not in err
    assert retire_runs(uri, "exp", mine) == [] and retire_runs(uri, "nosuch", mine) == []


# ----------------------------------------------------------------------------- fault-matrix set-ups
# (tests/tunelab/test_fault_matrix.py, section "round 3, 3", calls these as its rows' `setup`)

def plant_link(folder: Path, link: str, target: str) -> None:
    (folder / link).parent.mkdir(parents=True, exist_ok=True)
    (folder / link).symlink_to(folder / target)


def experiment_with_lock_link(folder: Path) -> None:
    write_experiment(folder / "runs" / "live")
    plant_link(folder, "runs/.live.lock", "canary.txt")


def experiment_with_record_link(folder: Path) -> None:
    write_experiment(folder / "elsewhere" / "linked")
    (folder / "runs" / "linked").mkdir(parents=True)
    (folder / "runs" / "linked" / "tuner.pkl").write_text("ray")
    plant_link(folder, "runs/linked/tunelab.json", "elsewhere/linked/tunelab.json")


def foreign_database(folder: Path) -> None:
    with sqlite3.connect(folder / "app.db") as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.execute("INSERT INTO invoices VALUES (1, 9.5)")
    sqlite3.connect(folder / "app.db").close()


def study_of_another_experiment(folder: Path) -> None:
    study = optuna.create_study(study_name="exp", storage=f"sqlite:///{folder / 'owned.db'}")
    study.set_user_attr(OWNER_ATTR, "/elsewhere/runs/exp")


# ----------------------------------------------------------------------------- end to end (Ray)

def overwrite_replaces_only_its_own(tmp_path: Path) -> None:
    """A real search with a study and MLflow runs; another experiment of its name in another
    storage is refused; --overwrite keeps the user's file, replaces the study (owned anew) and
    marks the old runs deleted, naming them. Fault-matrix scenario (section round 3, 3), run
    in-process on the shared test cluster (file:// storage: the cluster has two nodes)."""
    from mlflow import MlflowClient

    from tests.in_process import tunelab

    canary = tmp_path / "canary.txt"
    canary.write_text("precious")
    study, tracking = f"sqlite:///{tmp_path / 'study.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"

    def tune(storage: Path, *extra: str):
        return tunelab("tune", "classifier", "--num-samples", "2", "--max-epochs", "1", "--max-concurrent", "1",
                       "--set", "image_size=8", "--set", "width=8", "--storage", storage.as_uri(), "--name", "exp",
                       "--optuna-storage", study, "--mlflow", tracking, *extra)

    experiment = tmp_path / "runs" / "exp"
    first = tune(tmp_path / "runs")
    assert first.returncode == 0, first.stderr[-3000:]
    assert optuna.load_study(study_name="exp", storage=study).user_attrs[OWNER_ATTR] == str(experiment)
    (experiment / "notes.txt").write_text("mine")
    client = MlflowClient(tracking_uri=tracking)
    mlflow_experiment = client.get_experiment_by_name("exp").experiment_id
    old_runs = {r.info.run_id for r in client.search_runs([mlflow_experiment])}
    assert len(old_runs) == 2

    other = tune(tmp_path / "other", "--overwrite")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert (f"study 'exp' belongs to experiment '{experiment}', not to this one ('{tmp_path / 'other' / 'exp'}')"
            in other.stderr.strip().splitlines()[-1])

    second = tune(tmp_path / "runs", "--overwrite")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"deleted study 'exp' of {experiment}" in second.stderr
    assert "kept 1 item(s) that tunelab did not write" in second.stderr
    assert "marked 2 MLflow run(s) of the replaced" in second.stderr and all(r in second.stderr for r in old_runs)
    assert (experiment / "notes.txt").read_text() == "mine" and canary.read_text() == "precious"
    assert not (tmp_path / "other" / "exp").exists()
    reader = MlflowClient(tracking_uri=tracking)
    assert {reader.get_run(r).info.lifecycle_stage for r in old_runs} == {"deleted"}
    assert len(reader.search_runs([mlflow_experiment])) == 2  # the new search's, active
    new_study = optuna.load_study(study_name="exp", storage=study)
    assert new_study.user_attrs[OWNER_ATTR] == str(experiment) and len(new_study.trials) == 2



def test_atomic_writes_replace_a_planted_link_and_leave_its_target(tmp_path):
    """tunelab.json, reports, checkpoints and the pretrained=auto cache are written whole and renamed
    into place: the rename replaces a link at the path, never the file it points to."""
    from tunelab.trainables.fileio import atomic_write_text, save_checkpoint

    target = tmp_path / "precious.txt"
    target.write_text("precious")
    for name, write in (("tunelab.json", lambda p: atomic_write_text(p, "{}")),
                        ("backbone.pt", lambda p: save_checkpoint(p, {"w": 1}))):
        link = tmp_path / name
        link.symlink_to(target)
        write(link)
        assert not link.is_symlink() and link.stat().st_size > 0
    assert target.read_text() == "precious"


def test_study_ownership_compares_the_resolved_location_not_its_spelling(tmp_path):
    db = tmp_path / "studies.db"
    real = tmp_path / "runs"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    claim_study(tune_options(tmp_path, db), "exp", f"file://{tmp_path / 'alias' / 'exp'}")
    assert optuna.load_study(study_name="exp", storage=f"sqlite:///{db}").user_attrs[OWNER_ATTR] == str(real / "exp")
    for spelling in (str(real / "exp"), str(tmp_path / "alias" / "exp"), f"file://{real / 'exp'}"):
        with pytest.raises(ConfigError, match="already holds a study named 'exp'; pick another --name, pass --overwrite"):
            check_optuna_storage(tune_options(tmp_path, db), "exp", spelling)  # its own: --overwrite would do
        check_optuna_storage(tune_options(tmp_path, db, overwrite=True), "exp", spelling)


def test_resume_refuses_a_study_another_experiment_owns(tmp_path):
    from tunelab.study import check_resumed_study

    db = f"sqlite:///{tmp_path / 'studies.db'}"
    mine, theirs = str(tmp_path / "runs" / "exp"), str(tmp_path / "other" / "exp")
    check_resumed_study(db, "exp", mine)  # no study yet: Ray's search makes it
    optuna.create_study(study_name="exp", storage=db)
    check_resumed_study(db, "exp", mine)  # one made before owners were recorded
    optuna.load_study(study_name="exp", storage=db).set_user_attr(OWNER_ATTR, theirs)
    with pytest.raises(ConfigError, match=f"belongs to experiment '{theirs}', not to this one \\('{mine}'\\); "
                                          "resuming would mix"):
        check_resumed_study(db, "exp", mine)
