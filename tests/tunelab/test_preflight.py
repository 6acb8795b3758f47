"""Every failure that can be known before training is refused before it (issue 31, part 4), and
`--dry-run` runs those checks, says what would run and writes nothing. The one-line refusals
themselves are rows of the fault matrix (test_fault_matrix.py); these tests cover what a row
cannot: read-only folders, what --dry-run prints, URLs recorded absolute, probes of real servers."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.core.errors import ConfigError
from tunelab.cli import main


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write: its mode for a normal user; for root (which ignores modes) a
    read-only tmpfs mounted there, or a skip where mounting is not allowed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("running as root without permission to mount a read-only folder")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _refused(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv", [
    ["train", "classifier", "--out", "{ro}/run"],
    ["pretrain", "--out", "{ro}/p.pt"],
    ["report", "{exp}", "--out", "{ro}/report"],
    ["best", "{exp}", "--out", "{ro}/best.yaml"],
    ["compare", "--out", "{ro}/cmp"],
], ids=["train", "pretrain", "report", "best", "compare"])
def test_out_in_a_read_only_folder_is_refused_before_the_work(argv, read_only, tmp_path, capsys, ray_must_not_start):
    exp = tmp_path / "exp"
    exp.mkdir()
    line = _refused(capsys, [a.format(ro=read_only, exp=exp) for a in argv])
    assert f"--out '{read_only}/" in line and f"no write permission on '{read_only}'" in line
    assert not any(read_only.iterdir())


def test_unwritable_cache_is_refused_before_pretraining(read_only, tmp_path, capsys, monkeypatch, ray_must_not_start):
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(read_only / "cache"))
    line = _refused(capsys, ["tune", "finetune", "--storage", str(tmp_path / "runs"), "--set", "image_size=8"])
    assert f"TUNELAB_CACHE_DIR '{read_only}/cache' cannot be written: no write permission" in line
    assert "pretrained=auto" in line and not (tmp_path / "runs").exists()


def test_dry_run_says_what_would_run_and_writes_nothing(tmp_path, capsys, monkeypatch, ray_must_not_start):
    monkeypatch.chdir(tmp_path)
    storage, lock = tmp_path / "runs", tmp_path / "runs" / ".exp.lock"
    storage.mkdir()
    lock.write_text("")  # a free lock another run left: taken and released, not changed
    code = main(["tune", "classifier", "--storage", str(storage), "--name", "exp", "--dry-run", "--json",
                 "--set", "image_size=8", "--num-samples", "3", "--optuna-storage", "sqlite:///study.db"])
    out = capsys.readouterr().out
    plan = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and "dry run: every check passed; nothing was written" in out
    assert plan["dry_run"] is True and plan["experiment"] == str(storage / "exp") and plan["trials"] == 3
    assert plan["lock"] == f"lock {lock} taken and released" and "lr" in plan["space"]
    assert plan["optuna_storage"] == f"sqlite:///{tmp_path}/study.db"  # shown as it would be recorded
    assert "Ray is not started" in plan["skipped"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".exp.lock", "runs"] and lock.read_text() == ""


def test_compare_dry_run_checks_every_search_and_writes_nothing(tmp_path, capsys, ray_must_not_start):
    out = tmp_path / "cmp"
    code = main(["compare", "--out", str(out), "--methods", "classifier,finetune", "--replicates", "1", "--dry-run",
                 "--json"])
    printed = capsys.readouterr().out
    plan = json.loads(printed.strip().splitlines()[-1])
    assert code == 0 and set(plan["searches"]) == {"classifier", "finetune"}
    assert plan["source_backbone"] == str(out.resolve() / "source-backbone.pt")
    assert plan["searches"]["finetune"]["fixed"]["pretrained"] == plan["source_backbone"]
    assert "first: pretrain the source backbone" in printed and not out.exists()


def test_relative_urls_are_recorded_absolute(tmp_path, monkeypatch):
    from tunelab.search_spaces import space_for
    from tunelab.search_plan import resolve_relative_urls
    from tunelab.summaries import experiment_record
    from tunelab.tune_options import TuneOptions

    monkeypatch.chdir(tmp_path)
    opts = TuneOptions(method="classifier", optuna_storage="sqlite:///study.db", mlflow="sqlite:///ml/m.db")
    resolve_relative_urls(opts)
    record = experiment_record(opts, "x", str(tmp_path / "x"), {}, dict(space_for("classifier")), [])
    assert record["options"]["optuna_storage"] == f"sqlite:///{tmp_path}/study.db"
    assert record["options"]["mlflow"] == f"sqlite:///{tmp_path}/ml/m.db"
    assert record["search"]["optuna_storage"] == f"sqlite:///{tmp_path}/study.db"


def test_absolute_urls_and_other_schemes_are_kept():
    from tunelab.preflight import absolute_sqlite_url, absolute_tracking_uri

    assert absolute_sqlite_url("sqlite:////abs/s.db") == "sqlite:////abs/s.db"
    assert absolute_sqlite_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert absolute_tracking_uri("http://h:5000") == "http://h:5000"
    assert absolute_tracking_uri("mlruns") == os.path.abspath("mlruns")


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_mlflow_probe_passes_a_server_that_answers_and_refuses_one_that_does_not(http_server):
    from tunelab.preflight import probe_mlflow

    probe_mlflow(f"http://127.0.0.1:{http_server}")
    with pytest.raises(ConfigError, match=f"nothing answered at 127.0.0.1:{http_server + 1}|nothing answered"):
        probe_mlflow(f"http://127.0.0.1:{http_server + 1}")


def test_mlflow_probe_accepts_a_sqlite_file_mlflow_then_opens(tmp_path):
    import mlflow

    from tunelab.preflight import probe_mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    probe_mlflow(uri)
    assert not Path(tmp_path / "mlflow.db").exists()  # the probe writes nothing
    client = mlflow.MlflowClient(uri)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    probe_mlflow(uri)  # an existing MLflow database passes too


# Bounded time per example (hypothesis's deadline), not a wall-clock assertion: a long run of
# digits once took the unit search quadratic time (8000 digits: 20 s).
@settings(max_examples=100, deadline=1000)
@given(st.text(alphabet="0123456789.smhdx ", max_size=20000))
def test_durations_parse_in_linear_time(text):
    from tunelab.duration import parse_duration

    try:
        assert parse_duration(text) > 0
    except ConfigError as exc:
        assert str(exc).startswith("--time-budget ") and len(str(exc)) < 300


@pytest.mark.ray
def test_relative_sqlite_urls_reach_the_same_databases_from_another_folder(ray_cluster, tmp_path, monkeypatch):
    """A real search run from folder A with relative sqlite URLs; its record names absolute ones,
    which Optuna and MLflow open from folder B and find the search's study and runs. (In-process
    on the shared test cluster, whose two nodes need a file:// storage.)"""
    import mlflow
    import optuna

    from tests.in_process import tunelab

    here, elsewhere = tmp_path / "a", tmp_path / "b"
    here.mkdir()
    elsewhere.mkdir()
    result = tunelab("tune", "classifier", "--num-samples", "1", "--max-epochs", "1", "--set", "image_size=8",
                     "--set", "width=8", "--storage", (tmp_path / "runs").as_uri(), "--name", "rel",
                     "--optuna-storage", "sqlite:///study.db", "--mlflow", "sqlite:///ml.db", cwd=here)
    assert result.returncode == 0, result.stderr[-2000:]
    options = json.loads((tmp_path / "runs" / "rel" / "tunelab.json").read_text())["options"]
    assert options["optuna_storage"] == f"sqlite:///{here}/study.db"
    assert options["mlflow"] == f"sqlite:///{here}/ml.db"
    monkeypatch.chdir(elsewhere)
    assert len(optuna.load_study(study_name="rel", storage=options["optuna_storage"]).trials) == 1
    client = mlflow.MlflowClient(options["mlflow"])
    assert len(client.search_runs([client.get_experiment_by_name("rel").experiment_id])) == 1


@pytest.mark.parametrize("methods", ["", ",", " , "])
def test_compare_with_an_empty_methods_list_is_refused_not_read_as_every_method(capsys, tmp_path, methods):
    """`--methods "$METHODS"` with the variable unset must not start the whole main job."""
    line = _refused(capsys, ["compare", "--methods", methods, "--out", str(tmp_path / "cmp"), "--dry-run"])
    assert line == (f"tunelab: error: --methods {methods!r} names no method; choose from: classifier, finetune, "
                    "randreg, adarand, arcface")
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("storage", ["file:relative", "FILE:runs", "s3:bucket/runs"])
def test_a_storage_uri_without_slashes_is_refused_not_made_a_folder_named_so(capsys, tmp_path, monkeypatch, storage):
    monkeypatch.chdir(tmp_path)
    line = _refused(capsys, ["tune", "classifier", "--storage", storage, "--dry-run"])
    scheme = storage.split(":")[0].lower()
    assert line.startswith(f"tunelab: error: --storage {storage!r} is a URI without '//'; write {scheme}://")
    assert list(tmp_path.iterdir()) == []


def test_dry_run_names_the_ray_instance_a_run_would_join_and_why(monkeypatch):
    from tunelab.dryrun import joined_cluster

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    assert joined_cluster("10.0.0.1:6379") == "the cluster at 10.0.0.1:6379 (--address)"
    assert joined_cluster(None) == "the cluster at 10.0.0.2:6379 ($RAY_ADDRESS)"
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr("tunelab.cluster.recorded_cluster", lambda: "10.0.0.3:6379")
    assert joined_cluster(None) == ("the Ray instance already running on this machine (10.0.0.3:6379); "
                                    "--address local starts a private one instead")


@pytest.mark.parametrize("storage", ["s3://", "s3:///runs", "gs://?endpoint_override=127.0.0.1:9"])
def test_a_bucket_storage_without_a_bucket_is_refused(capsys, storage):
    line = _refused(capsys, ["tune", "classifier", "--storage", storage, "--dry-run"])
    scheme = storage.split(":")[0]
    assert line == f"tunelab: error: --storage {storage!r} names no bucket; write {scheme}://BUCKET/FOLDER"


def test_a_storage_schemes_case_does_not_make_a_local_folder_remote(capsys, tmp_path):
    code = main(["tune", "classifier", "--storage", f"File://{tmp_path}/runs", "--name", "x", "--dry-run", "--json"])
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and plan["experiment"] == f"file://{tmp_path}/runs/x"
    assert plan["lock"] != "no lock (remote storage)"


@pytest.mark.parametrize("where", ["{exp}", "{exp}/classifier_0000abcd", "{link}"])
def test_train_never_writes_into_an_experiment_folder(capsys, tmp_path, where):
    experiment = tmp_path / "runs" / "exp"
    (experiment / "classifier_0000abcd").mkdir(parents=True)
    (experiment / "tunelab.json").write_text("{}")
    (tmp_path / "link").symlink_to(experiment / "classifier_0000abcd")
    out = where.format(exp=experiment, link=tmp_path / "link")
    line = _refused(capsys, ["train", "classifier", "--set", "image_size=8", "--set", "epochs=1", "--out", out])
    assert line.startswith(f"tunelab: error: --out {out!r} is inside experiment {str(experiment)!r}; tunelab never writes")
    assert sorted(p.name for p in experiment.rglob("*")) == ["classifier_0000abcd", "tunelab.json"]
