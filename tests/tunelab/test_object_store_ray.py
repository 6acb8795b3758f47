"""A real search on object storage (moto's S3 server in a process of its own), given as a Ray or
pyarrow user writes it with AWS_ENDPOINT_URL: the store paused (SIGSTOP) mid-run, the driver
SIGKILLed, `resume` continues after the lease expires; nothing written is lost, no ended trial
runs again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import S3_SECRET, start_s3_server_process

pytestmark = [pytest.mark.heavy, pytest.mark.ray]
TINY = ["image_size=16", "width=8", "batch_size=128"]
EPOCHS = 3


def _results(filesystem, experiment: str) -> dict[str, bytes]:
    """Each trial folder's result.json in the store, as it stands."""
    import pyarrow.fs as pafs

    found = {}
    for info in filesystem.get_file_info(pafs.FileSelector(experiment, allow_not_found=True, recursive=True)):
        if info.type == pafs.FileType.File and info.base_name == "result.json":
            with filesystem.open_input_stream(info.path) as handle:
                found[info.path.split("/")[-2]] = handle.read()
    return found


def _ended(results: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in results.items() if len(data.splitlines()) == EPOCHS}


def _tunelab(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_search_on_s3_survives_a_paused_store_and_a_killed_driver(tmp_path):
    import pyarrow.fs as pafs

    server, port = start_s3_server_process()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="AKID",
               AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
               RAY_ADDRESS="local",  # a private Ray instance: its workers inherit the AWS_* variables
               TUNELAB_LEASE_TTL_S="5", PYTHONUNBUFFERED="1")
    filesystem = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="AKID",
                                   secret_key=S3_SECRET, region="us-east-1")
    command = ["tune", "classifier", "--num-samples", "4", "--max-epochs", str(EPOCHS), "--scheduler", "fifo",
               "--max-concurrent", "1", "--storage", "s3://bkt/runs", "--name", "paused", "--json",
               *sum((["--set", s] for s in TINY), [])]
    log = tmp_path / "tune.log"
    try:
        with open(log, "w") as stderr:
            driver = subprocess.Popen([sys.executable, "-m", "tunelab", *command], env=env,
                                      stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and driver.poll() is None and not _ended(_results(filesystem, "bkt/runs/paused")):
                time.sleep(0.5)
            assert driver.poll() is None and _ended(_results(filesystem, "bkt/runs/paused")), log.read_text()[-3000:]
            server.send_signal(signal.SIGSTOP)  # the store stops answering; TCP connections hang
            time.sleep(8)
            server.send_signal(signal.SIGCONT)
            while time.time() < deadline and driver.poll() is None \
                    and len(_ended(_results(filesystem, "bkt/runs/paused"))) < 2:
                time.sleep(0.5)
            ended = _ended(_results(filesystem, "bkt/runs/paused"))
            assert driver.poll() is None and len(ended) >= 2, log.read_text()[-3000:]
            os.killpg(driver.pid, signal.SIGKILL)  # the driver's process group: no handler runs
        finally:
            driver.wait(timeout=60)
        time.sleep(6)  # the killed driver's lease (5 s) expires

        resumed = _tunelab(["resume", "s3://bkt/runs/paused", "--json"], env, timeout=600)

        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert S3_SECRET not in resumed.stdout + resumed.stderr
        assert "taking over the expired lease" in resumed.stderr
        assert json.loads(resumed.stdout.strip().splitlines()[-1])["statuses"] == {"finished": 4}
        after = _results(filesystem, "bkt/runs/paused")
        assert {name: after[name] for name in ended} == ended  # the ended trials were not run again
        assert len(_ended(after)) == 4
        reported = _tunelab(["report", "s3://bkt/runs/paused", "--out", str(tmp_path / "report")], env, timeout=300)
        assert reported.returncode == 0, reported.stderr[-3000:]
        assert filesystem.get_file_info("bkt/runs/.paused.lock").type == pafs.FileType.NotFound  # released
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()


def _s3_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="AKID",
               AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
               RAY_ADDRESS="local", TUNELAB_LEASE_TTL_S="5", PYTHONUNBUFFERED="1")
    return env


def test_compare_on_s3_continues_after_sigterm_and_a_second_compare_is_refused(tmp_path):
    """`compare --storage s3://...`: the searches go to the bucket, compare's state and report stay
    in --out; stopped by SIGTERM mid-search, the same command continues that search from the bucket
    (Ray's state there) and finishes; another compare given the same --storage is refused."""
    import pyarrow.fs as pafs

    server, port = start_s3_server_process()
    env = _s3_env(port)
    filesystem = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="AKID",
                                   secret_key=S3_SECRET, region="us-east-1")
    out = tmp_path / "c"
    command = ["compare", "--methods", "classifier,arcface", "--replicates", "1", "--seeds", "1",
               "--num-samples", "3", "--max-epochs", str(EPOCHS), "--grace-period", "1",
               "--storage", "s3://bkt/cmp", "--out", str(out), "--json"]
    try:
        with open(tmp_path / "first.log", "w") as stderr:
            first = subprocess.Popen([sys.executable, "-m", "tunelab", *command], env=env, stdout=subprocess.DEVNULL,
                                     stderr=stderr, start_new_session=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and first.poll() is None and not _ended(_results(filesystem, "bkt/cmp/classifier")):
                time.sleep(0.5)
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            os.killpg(first.pid, signal.SIGTERM)
            assert first.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()[-3000:]
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
        assert not (out / "report").exists()

        continued = _tunelab(command, env, timeout=600)

        assert continued.returncode == 0, continued.stderr[-3000:]
        assert "classifier: continuing the search an earlier run left unfinished (s3://bkt/cmp/classifier)" \
            in continued.stderr
        summary = json.loads(continued.stdout.strip().splitlines()[-1])
        assert summary["experiments"] == {"classifier": "s3://bkt/cmp/classifier", "arcface": "s3://bkt/cmp/arcface"}
        assert {row["method"] for row in summary["rows"]} == {"classifier", "arcface"}
        assert (out / "report" / "report.md").is_file() and not (out / "runs").exists()
        for method in ("classifier", "arcface"):
            assert len(_results(filesystem, f"bkt/cmp/{method}")) == 3
        before = _results(filesystem, "bkt/cmp")

        second = _tunelab([*command[:-3], "--out", str(tmp_path / "other"), "--json"], env, timeout=120)

        assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert "--storage 's3://bkt/cmp' is not empty" in second.stderr
        assert _results(filesystem, "bkt/cmp") == before
    finally:
        server.kill()
        server.wait()
