"""Object storage without Ray, against moto's real S3 server on 127.0.0.1: one writer per
experiment (the lease object, tunelab.object_store_lease) and the local mirror of Ray's state that
`resume`'s repairs work on (tunelab.state_mirror)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import S3_SECRET
from tunelab.core.errors import ConfigError
from tunelab.core.storage import join_uri
from tunelab.experiment_lock import ExperimentLock
from tunelab.object_store_lease import lease_location

# A real S3 server (moto, its own process) and drivers in subprocesses: seconds a test.
pytestmark = pytest.mark.long

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_leases(monkeypatch):
    """Leases of 2 s (renewed every 0.5 s) and a 0.5 s settle, so expiry is seen within a test."""
    monkeypatch.setenv("TUNELAB_LEASE_TTL_S", "2")
    monkeypatch.setattr("tunelab.object_store_lease.SETTLE_S", 0.5)


def _lease_object(experiment: str) -> dict | None:
    filesystem, path = lease_location(experiment)
    import pyarrow.fs as pafs

    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as handle:
        return json.loads(handle.read())


def test_a_second_driver_is_refused_naming_the_holder_until_the_first_releases(s3_server, short_leases):
    experiment = join_uri(s3_server, "exp")
    with ExperimentLock(experiment) as first:
        time.sleep(3)  # past one TTL: only renewals keep it
        with pytest.raises(ConfigError) as refused:
            ExperimentLock(experiment).acquire()
        message = str(refused.value)
        assert "is in use by pid" in message and "expires in" in message and S3_SECRET not in message
        held = _lease_object(experiment)
        assert held["token"] == first.lease.token and held["experiment"] == first.recorded_identity
    assert _lease_object(experiment) is None  # released: the object is gone
    with ExperimentLock(experiment):
        pass


def test_two_drivers_starting_at_once_get_one_lease(s3_server, short_leases):
    experiment = join_uri(s3_server, "exp")
    start, outcomes = threading.Barrier(2), []

    def take():
        start.wait()
        try:
            outcomes.append(ExperimentLock(experiment).acquire())
        except ConfigError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    held = [o for o in outcomes if isinstance(o, ExperimentLock)]
    assert len(outcomes) == 2 and len(held) == 1, outcomes
    assert "is in use by pid" in str(next(o for o in outcomes if isinstance(o, ConfigError)))
    held[0].release()


def test_a_killed_drivers_lease_expires_and_is_taken_over_with_its_record(s3_server, short_leases, capsys):
    experiment = join_uri(s3_server, "exp")
    holder = _hold_in_a_process(experiment)
    try:
        holder.send_signal(signal.SIGKILL)  # no release: its lease stays until it expires
        holder.wait(timeout=30)
        with pytest.raises(ConfigError, match=f"in use by pid {holder.pid}"):
            ExperimentLock(experiment).acquire()
        time.sleep(2.5)
        with ExperimentLock(experiment) as lock:
            assert lock.previous["pid"] == holder.pid
        assert f"taking over the expired lease of pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_one_bucket_name_on_two_endpoints_is_two_experiments(s3_server, short_leases):
    # The second server in a process of its own: moto's servers in one process share one store.
    from tests.conftest import start_s3_server_process

    server, port = start_s3_server_process()
    try:
        other = f"s3://AKID:{S3_SECRET}@bkt/runs?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        with ExperimentLock(join_uri(s3_server, "exp")) as first, ExperimentLock(join_uri(other, "exp")) as second:
            assert first.identity != second.identity
            assert _lease_object(join_uri(other, "exp"))["token"] == second.lease.token
            assert _lease_object(join_uri(s3_server, "exp"))["token"] == first.lease.token
    finally:
        server.kill()
        server.wait()


def test_tune_on_a_held_experiment_is_refused_in_one_line_before_ray_starts(s3_server, short_leases, monkeypatch,
                                                                            capsys, ray_must_not_start):
    from tunelab.cli import main

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with ExperimentLock(join_uri(s3_server, "exp")):
        capsys.readouterr()
        code = main(["tune", "classifier", "--dataset", "digits", "--num-samples", "1", "--max-epochs", "1",
                     "--storage", s3_server, "--name", "exp"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "is in use by pid" in lines[0] and S3_SECRET not in lines[0]


def test_the_state_mirror_uploads_what_changed_searcher_first_and_deletes_nothing(s3_server, monkeypatch):
    import pyarrow.fs as pafs

    from tunelab.core.storage import remote_filesystem
    from tunelab.state_mirror import local_state

    experiment = join_uri(s3_server, "exp")
    filesystem, root = remote_filesystem(experiment)
    files = {"experiment_state-s.json": b"{}", "searcher-state-s.pkl": b"old", "tunelab.json": b"{}",
             "classifier_a1b2c3d4/result.json": b"row\n", "classifier_a1b2c3d4/params.json": b"{}",
             "classifier_a1b2c3d4/checkpoint_000000/model.pt": b"weights", "classifier_a1b2c3d4/events.out": b"big"}
    for name, data in files.items():
        with filesystem.open_output_stream(f"{root}/{name}") as handle:
            handle.write(data)
    written = []

    class Recorded:  # the real store, each upload's name noted (pyarrow's classes cannot be patched)
        def __getattr__(self, name):
            return getattr(filesystem, name)

        def open_output_stream(self, path, *args, **kwargs):
            written.append(path.rsplit("/", 1)[-1])
            return filesystem.open_output_stream(path, *args, **kwargs)

    monkeypatch.setattr("tunelab.state_mirror.remote_filesystem", lambda path: (Recorded(), root))
    with local_state(experiment) as state:
        mirror = Path(state)
        assert (mirror / "classifier_a1b2c3d4" / "checkpoint_000000").is_dir()  # its folder, not its files
        assert not (mirror / "classifier_a1b2c3d4" / "checkpoint_000000" / "model.pt").exists()
        assert not (mirror / "classifier_a1b2c3d4" / "events.out").exists()
        (mirror / "experiment_state-s.json").write_bytes(b'{"changed": 1}')
        (mirror / "searcher-state-s.pkl").write_bytes(b"new")
        (mirror / "classifier_a1b2c3d4" / "result.json").unlink()  # gone from the mirror: kept in the store
    assert written == ["searcher-state-s.pkl", "experiment_state-s.json"]
    with filesystem.open_input_stream(f"{root}/experiment_state-s.json") as handle:
        assert handle.read() == b'{"changed": 1}'
    for name in ("classifier_a1b2c3d4/result.json", "classifier_a1b2c3d4/checkpoint_000000/model.pt"):
        assert filesystem.get_file_info(f"{root}/{name}").type == pafs.FileType.File
    written.clear()
    with pytest.raises(RuntimeError), local_state(experiment) as state:
        (Path(state) / "experiment_state-s.json").write_bytes(b"half")
        raise RuntimeError("a step failed")
    assert written == []  # nothing uploaded after a failed step


@pytest.mark.parametrize("planted", [b"not json", b"[1, 2]", b'{"token": "x", "expires": "soon"}',
                                     b'{"token": "x", "expires": NaN}', b'{"token": "x"}', b"[" * 100000 + b"]" * 100000])
def test_a_lease_object_that_is_not_a_live_lease_is_taken_over(s3_server, short_leases, planted):
    experiment = join_uri(s3_server, "exp")
    filesystem, path = lease_location(experiment)
    with filesystem.open_output_stream(path) as handle:
        handle.write(planted)
    with ExperimentLock(experiment) as lock:
        assert _lease_object(experiment)["token"] == lock.lease.token


def test_a_lease_planted_far_in_the_future_is_refused_saying_what_to_delete(s3_server, short_leases):
    experiment = join_uri(s3_server, "exp")
    filesystem, path = lease_location(experiment)
    with filesystem.open_output_stream(path) as handle:
        handle.write(json.dumps({"token": "x", "expires": time.time() + 1e9, "pid": 7}).encode())
    with pytest.raises(ConfigError, match=r"in use by pid 7 .* expires in more than two days .* if no run holds it, "
                                          r"delete bkt/runs/\.exp\.lock"):
        ExperimentLock(experiment).acquire()


def _hold_in_a_process(experiment: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "import tunelab.object_store_lease as l; l.SETTLE_S = 0.5\n"
        "from tunelab.experiment_lock import ExperimentLock\n"
        "ExperimentLock(%r).acquire(); print('held', flush=True); time.sleep(120)"
    ) % (str(ROOT), experiment)], stdout=subprocess.PIPE, text=True,
        env={**__import__("os").environ, "TUNELAB_LEASE_TTL_S": "2"})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_an_expired_lease_of_a_paused_driver_on_this_host_is_not_taken_over(s3_server, short_leases):
    experiment = join_uri(s3_server, "exp")
    holder = _hold_in_a_process(experiment)
    try:
        holder.send_signal(signal.SIGSTOP)  # Ctrl-Z: it cannot renew
        time.sleep(3)
        with pytest.raises(ConfigError, match=f"expired, but its holder, pid {holder.pid} .* still runs on this host"):
            ExperimentLock(experiment).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_a_driver_whose_lease_was_taken_over_stops_at_once(s3_server, short_leases):
    experiment = join_uri(s3_server, "exp")
    holder = _hold_in_a_process(experiment)
    try:
        filesystem, path = lease_location(experiment)
        with filesystem.open_output_stream(path) as handle:  # another driver's lease, as after a takeover
            handle.write(json.dumps({"token": "other", "expires": time.time() + 60, "pid": 7, "host": "h"}).encode())
        assert holder.wait(timeout=30) == 1
        assert _lease_object(experiment)["token"] == "other"  # nothing written, nothing deleted
    finally:
        holder.kill()


def test_the_lease_keeps_no_secret_and_one_experiment_spelled_two_ways_is_one(s3_server, short_leases, monkeypatch):
    from urllib.parse import parse_qs, urlsplit

    experiment = join_uri(s3_server, "exp")
    with ExperimentLock(experiment):
        assert S3_SECRET not in json.dumps(_lease_object(experiment))
    # the same experiment given as AWS_* variables: the dead holder's record is its own
    holder = _hold_in_a_process(experiment)
    holder.kill()
    holder.wait()
    time.sleep(2.5)
    endpoint = parse_qs(urlsplit(s3_server).query)["endpoint_override"][0]
    for name, value in (("AWS_ENDPOINT_URL", f"http://{endpoint}"), ("AWS_ACCESS_KEY_ID", "AKID"),
                        ("AWS_SECRET_ACCESS_KEY", S3_SECRET), ("AWS_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    with ExperimentLock("s3://bkt/runs/exp") as lock:
        assert lock.previous["pid"] == holder.pid


def test_every_spelling_of_an_experiment_has_one_lease_beside_it_and_release_deletes_only_that(s3_server,
                                                                                                short_leases):
    import pyarrow.fs as pafs

    base, query = s3_server.split("?")
    spellings = [f"{base}/exp?{query}", f"{base}/exp/?{query}", f"{base}/./exp?{query}", f"{base}//exp?{query}"]
    assert {lease_location(s)[1] for s in spellings} == {"bkt/runs/.exp.lock"}
    filesystem, _ = lease_location(spellings[0])
    for name in ("runs/exp/tunelab.json", "runs/.other.lock", "runs/exp.lock", "keep.txt"):
        with filesystem.open_output_stream(f"bkt/{name}") as handle:
            handle.write(b"not ours")
    with ExperimentLock(spellings[0]):
        with pytest.raises(ConfigError, match="is in use by pid"):
            ExperimentLock(spellings[2]).acquire()
    for name in ("runs/exp/tunelab.json", "runs/.other.lock", "runs/exp.lock", "keep.txt"):
        with filesystem.open_input_stream(f"bkt/{name}") as handle:
            assert handle.read() == b"not ours", name
    assert filesystem.get_file_info("bkt/runs/.exp.lock").type == pafs.FileType.NotFound
