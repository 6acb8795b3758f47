"""One writer per experiment, whatever its spelling: `x`, `./x/`, a symlink and file:// of one
experiment folder are one identity, so they share one lock (tunelab/experiments.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.core.storage import experiment_identity
from tunelab.core.errors import ConfigError
from tunelab.experiment_lock import ExperimentLock, lock_path

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def experiment(tmp_path, monkeypatch) -> Path:
    """runs/x (the working folder is tmp_path), a symlink `alias` to it elsewhere, and a canary."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "alias").symlink_to(tmp_path / "runs" / "x")
    (tmp_path / "elsewhere" / "canary.txt").write_text("precious")
    return tmp_path / "runs" / "x"


def _spellings(tmp_path: Path) -> list[str]:
    return ["runs/x", "./runs/x/", str(tmp_path / "runs" / "x"), "elsewhere/alias", "./elsewhere/alias/",
            f"file://{tmp_path}/runs/x", f"file://{tmp_path}/runs/x/", f"file://{tmp_path}/elsewhere/alias/",
            f"file://{tmp_path}/elsewhere/../runs/./x"]


def _hold(spelling: str, cwd: Path) -> subprocess.Popen:
    """Another process that takes the lock under `spelling` and keeps it."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from tunelab.experiment_lock import ExperimentLock\n"
        "lock = ExperimentLock(%r).acquire(); print('held', flush=True); time.sleep(120)"
    ) % (ROOT, spelling)], stdout=subprocess.PIPE, text=True, cwd=cwd)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_every_spelling_is_one_identity(experiment, tmp_path):
    assert {experiment_identity(s) for s in _spellings(tmp_path)} == {os.path.realpath(experiment)}
    assert {lock_path(s) for s in _spellings(tmp_path)} == {Path(os.path.realpath(tmp_path / "runs" / ".x.lock"))}


@pytest.mark.parametrize("held_as", ["runs/x", "file://{t}/elsewhere/alias"])
def test_a_second_writer_under_another_spelling_is_refused_naming_the_holder(experiment, tmp_path, held_as):
    holder = _hold(held_as.format(t=tmp_path), tmp_path)
    try:
        for spelling in _spellings(tmp_path):
            with pytest.raises(ConfigError, match=rf"is in use by pid {holder.pid} on host .*lock: .*/runs/\.x\.lock"):
                ExperimentLock(spelling).acquire()
    finally:
        holder.kill()
        holder.wait()
    # One lock file, beside the real folder; nothing written beside the alias or through it.
    assert json.loads((tmp_path / "runs" / ".x.lock").read_text())["pid"] == holder.pid
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["alias", "canary.txt"]
    assert (tmp_path / "elsewhere" / "canary.txt").read_text() == "precious"
    assert list(experiment.iterdir()) == []


def test_the_refusal_names_the_alias_and_what_it_is(experiment, tmp_path):
    holder = _hold("runs/x", tmp_path)
    try:
        alias = f"file://{tmp_path}/elsewhere/alias"
        with pytest.raises(ConfigError, match=rf"experiment '{alias}' \(= {os.path.realpath(experiment)}\) is in use"):
            ExperimentLock(alias).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_object_store_uris_are_normalised():
    same = ["s3://bucket/runs/x", "s3://bucket/runs/x/", "S3://bucket/runs//x", "s3://bucket/runs/./x/"]
    assert {experiment_identity(u) for u in same} == {"s3://bucket/runs/x"}
    assert experiment_identity("s3://b/r/x?scheme=http&endpoint_override=h:9000") == \
        experiment_identity("s3://b/r/x/?endpoint_override=h:9000&scheme=http") == \
        "s3://b/r/x?endpoint_override=h:9000&scheme=http"
    assert experiment_identity("s3://bucket/runs/x") != experiment_identity("s3://bucket/runs/y")
    assert experiment_identity("s3://bucket/runs/x") != experiment_identity("gs://bucket/runs/x")


def test_an_object_store_identity_is_still_a_uri_its_filesystem_reads():
    """urlunsplit would drop the '//' of an empty authority (local:///x -> local:/x)."""
    from tunelab.core.storage import experiment_identity

    assert experiment_identity("local:///tmp/a/./b/") == "local:///tmp/a/b"
    assert experiment_identity("S3://bkt/runs//x/?b=2&a=1") == "s3://bkt/runs/x?a=1&b=2"
