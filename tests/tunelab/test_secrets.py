"""Secrets and URIs (issue 31, 7): passwords in storage and tracking URIs are used, never shown or
recorded; resume finds them again; object-store URIs in the query form work.

The PostgreSQL tests run a real server (the `postgres` binaries of the machine, started as the
`postgres` user on a free port) and skip where there is none; the S3 test runs moto's real S3
server (moto[server], in the dev extra) and a real tiny search.
"""
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tunelab.core.storage import join_uri
from tunelab.core.record import read_record, write_record
from tunelab.core.redaction import redact, split_password
from tunelab.core.errors import ConfigError
from tunelab.credentials import for_resume, hand_over
from tunelab.study import check_reconnect

SECRET = "hunter2"


@pytest.mark.parametrize("text, shown", [
    ("postgresql://tl:hunter2@db.example:5432/optuna", "postgresql://tl:***@db.example:5432/optuna"),
    ("postgresql+psycopg://tl:hun%40ter2@db/x?sslmode=require", "postgresql+psycopg://tl:***@db/x?sslmode=require"),
    ("s3://AKID:hunter2/with+slash@bucket/runs?region=eu", "s3://AKID:***@bucket/runs?region=eu"),
    ("http://me:hunter2@127.0.0.1:5000", "http://me:***@127.0.0.1:5000"),
    ("https://h/x?X-Amz-Signature=hunter2&a=1&password=hunter2", "https://h/x?X-Amz-Signature=***&a=1&password=***"),
    ("error: --mlflow 'http://me:hunter2@h' and mysql://r:hunter2@h/d", "error: --mlflow 'http://me:***@h' and mysql://r:***@h/d"),
])
def test_redact_hides_every_password_and_secret_query_value(text, shown):
    assert redact(text) == shown
    assert redact(shown) == shown  # idempotent: a recorded URI is shown as recorded


@pytest.mark.parametrize("text", ["sqlite:///runs/study.db", "s3://bkt/runs?endpoint_override=127.0.0.1:9000&scheme=http",
                                  "file:///tmp/a@b/c", "postgresql://tl@db/x", "/home/me/runs", "lr=0.1"])
def test_redact_leaves_uris_without_secrets_as_they_are(text):
    assert redact(text) == text


def test_split_password_and_join_uri():
    assert split_password("postgresql://tl:hunter2@db/x") == ("postgresql://tl@db/x", SECRET)
    assert split_password("postgresql://tl:***@db/x") == ("postgresql://tl@db/x", None)
    assert split_password("sqlite:///a.db") == ("sqlite:///a.db", None)
    query = "s3://bkt/runs?endpoint_override=127.0.0.1:9000&scheme=http"
    assert join_uri(query, "exp", "tunelab.json") == "s3://bkt/runs/exp/tunelab.json?endpoint_override=127.0.0.1:9000&scheme=http"
    assert join_uri("s3://bkt/runs/", "exp") == "s3://bkt/runs/exp"


def test_the_record_written_holds_no_password(tmp_path):
    from tunelab.search_plan import resolve_space
    from tunelab.summaries import experiment_record
    from tunelab.tune_options import TuneOptions, fixed_values

    opts = TuneOptions(method="classifier", storage=str(tmp_path), name="exp",
                       optuna_storage=f"postgresql://tl:{SECRET}@db/x", mlflow=f"http://me:{SECRET}@h:5000")
    fixed = fixed_values(opts)
    argv = ["tune", "classifier", f"--optuna-storage=postgresql://tl:{SECRET}@db/x", "--mlflow", f"http://me:{SECRET}@h:5000"]
    record = experiment_record(opts, "exp", str(tmp_path / "exp"), fixed, resolve_space(opts, fixed), argv)
    assert SECRET not in json.dumps(record)  # what trackers tag and summaries print
    write_record(str(tmp_path), {**record, "command": ["tunelab", *argv]})  # the writer redacts on its own too
    text = (tmp_path / "tunelab.json").read_text()
    assert SECRET not in text
    stored = read_record(tmp_path)
    assert stored["search"]["optuna_storage"] == "postgresql://tl:***@db/x"
    assert stored["options"]["mlflow"] == "http://me:***@h:5000"
    assert stored["command"][3] == "--optuna-storage=postgresql://tl:***@db/x"


def test_hand_over_moves_the_password_to_the_clients_own_variable(monkeypatch):
    for name in ("PGPASSWORD", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert hand_over("postgresql://tl:hun%40ter2@db/x") == "postgresql://tl@db/x"
    assert os.environ["PGPASSWORD"] == "hun@ter2"
    assert hand_over(f"http://me:{SECRET}@h:5000") == "http://me@h:5000"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("me", SECRET)
    assert hand_over("sqlite:///a.db") == "sqlite:///a.db"
    # a database without such a variable keeps its URI as given (Ray's state keeps it; the record does not)
    assert hand_over(f"mysql://r:{SECRET}@h/d") == f"mysql://r:{SECRET}@h/d"


def test_resume_takes_the_password_from_the_option_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    recorded = "postgresql://tl:***@db/x"
    with pytest.raises(ConfigError, match="the password is not recorded.*PGPASSWORD"):
        for_resume("--optuna-storage", recorded, None, "runs/exp")
    assert for_resume("--optuna-storage", recorded, f"postgresql://tl:{SECRET}@db/x", "runs/exp") == "postgresql://tl@db/x"
    assert os.environ["PGPASSWORD"] == SECRET
    assert for_resume("--optuna-storage", recorded, None, "runs/exp") == "postgresql://tl@db/x"  # now from PGPASSWORD
    monkeypatch.delenv("PGPASSWORD")
    (tmp_path / "pgpass").write_text(f"db:5432:x:tl:{SECRET}\n")
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "pgpass"))
    assert for_resume("--optuna-storage", recorded, None, "runs/exp") == "postgresql://tl@db/x"
    with pytest.raises(ConfigError, match="is not the one experiment"):
        for_resume("--optuna-storage", recorded, f"postgresql://tl:{SECRET}@db/other", "runs/exp")
    with pytest.raises(ConfigError, match="was made without --mlflow"):
        for_resume("--mlflow", None, "http://h", "runs/exp")
    assert for_resume("--optuna-storage", "sqlite:///a.db", None, "runs/exp") == "sqlite:///a.db"


# ----------------------------------------------------------------------------- a real PostgreSQL server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


@pytest.fixture(scope="module")
def postgres():
    """A password-protected PostgreSQL server on a free port: its URL, password included."""
    import tempfile

    pytest.importorskip("psycopg")
    binaries = _postgres_bin()
    if binaries is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("no PostgreSQL server binaries (or not root, to run them as the postgres user)")
    folder = Path(tempfile.mkdtemp(prefix="tunelab-pg-"))  # pytest's own folders are closed to other users
    shutil.chown(folder, "postgres")
    (folder / "pw").write_text(SECRET)
    shutil.chown(folder / "pw", "postgres")
    port = _free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(binaries / "initdb"), "-D", str(folder / "data"), "-A", "scram-sha-256",
                    f"--pwfile={folder / 'pw'}", "-U", "tl"], check=True, capture_output=True, timeout=120)
    subprocess.run([*as_postgres, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-w", "-l", str(folder / "log"),
                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://tl:{SECRET}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_resume_reconnects_to_a_password_protected_study(postgres, monkeypatch, tmp_path, capsys):
    """The study is created through the password-less URL tune hands Optuna (the password in
    PGPASSWORD), so no pickled searcher holds it; resume's check connects the same way and
    refuses, saying where to put it, when the password it finds is wrong or missing."""
    import optuna

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    bare = hand_over(postgres)
    assert SECRET not in bare and os.environ["PGPASSWORD"] == SECRET
    optuna.create_study(study_name="exp", storage=bare)
    recorded = redact(postgres)
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(ConfigError, match="the password is not recorded"):
        for_resume("--optuna-storage", recorded, None, "runs/exp")
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(ConfigError, match="password authentication failed.*--optuna-storage URL") as refused:
        check_reconnect(for_resume("--optuna-storage", recorded, None, "runs/exp"), "runs/exp")
    assert SECRET not in str(refused.value)
    check_reconnect(for_resume("--optuna-storage", recorded, postgres, "runs/exp"), "runs/exp")  # given again
    monkeypatch.delenv("PGPASSWORD")
    (tmp_path / "pgpass").write_text(f"*:*:*:tl:{SECRET}\n")
    (tmp_path / "pgpass").chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "pgpass"))
    url = for_resume("--optuna-storage", recorded, None, "runs/exp")
    check_reconnect(url, "runs/exp")  # libpq's own .pgpass
    assert [s.study_name for s in optuna.get_all_study_summaries(storage=url)] == ["exp"]


def test_a_refused_password_never_reaches_the_error_line(postgres, capsys, tmp_path):
    from tunelab.cli import main

    wrong = postgres.replace(SECRET, "wr0ngpass")
    code = main(["tune", "classifier", "--storage", str(tmp_path / "runs"), "--optuna-storage", wrong])
    err = capsys.readouterr().err
    assert code == 2 and "password authentication failed" in err, err
    assert "wr0ngpass" not in err and "tl:***@" in err
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- a real S3 server

def _tunelab(*args, cwd: Path, timeout: int = 300):
    """`tunelab ARGS` in-process (on the shared test cluster): the exit code, stdout and stderr."""
    from tests.in_process import tunelab

    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")
    return tunelab(*args, unset=credentials, cwd=cwd, timeout=timeout)  # the URI alone says where and who


@pytest.mark.heavy  # object store
@pytest.mark.ray
def test_query_form_s3_storage_with_credentials_works_end_to_end(ray_cluster, s3_server, tmp_path):
    """tune --storage s3://KEY:SECRET@bkt/runs?endpoint_override=...; then report, best and resume
    of the experiment's URI: all exit 0, and the secret key is in none of their output, the
    experiment's tunelab.json or the report."""
    (tmp_path / "canary.txt").write_text("precious")
    tuned = _tunelab("tune", "classifier", "--dataset", "digits", "--num-samples", "1",
                     "--max-epochs", "1",
                     "--set", "image_size=8", "--set", "width=8", "--storage", s3_server, "--name", "exp", "--json",
                     cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr[:4000] + "\n[...]\n" + tuned.stderr[-3000:]  # first error, last
    summary = json.loads(tuned.stdout.strip().splitlines()[-1])
    assert summary["experiment"] == join_uri(redact(s3_server), "exp") and summary["statuses"] == {"finished": 1}
    experiment = join_uri(s3_server, "exp")  # the user's own URI, key and all
    reported = _tunelab("report", experiment, "--out", str(tmp_path / "report"), cwd=tmp_path)
    best = _tunelab("best", experiment, cwd=tmp_path)
    best_file = _tunelab("best", experiment, "--out", str(tmp_path / "best.json"), cwd=tmp_path)
    reproduced = _tunelab("reproduce", str(tmp_path / "best.json"), "--seeds", "1", "--json", cwd=tmp_path)
    resumed = _tunelab("resume", experiment, "--json", cwd=tmp_path)
    for run in (reported, best, best_file, reproduced, resumed):
        assert run.returncode == 0, run.stderr[-3000:]
        assert SECRET not in run.stdout + run.stderr
    assert "AKID:***@bkt/runs/exp?endpoint_override=" in best.stdout
    assert SECRET not in (tmp_path / "best.json").read_text()
    assert len(json.loads(reproduced.stdout.strip().splitlines()[-1])["seeds"]) == 1
    assert SECRET not in read_text_of(experiment) and SECRET not in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "canary.txt").read_text() == "precious"


def read_text_of(experiment: str) -> str:
    from tunelab.core.storage import read_text

    return read_text(experiment, "tunelab.json")
