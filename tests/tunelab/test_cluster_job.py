"""The manual's cluster section (docs/how-to/clusters-and-gpus.md), run as written: a real head
(`ray start --head`, job server on 127.0.0.1), a real worker node (`ray start --address`),
`ray job submit --working-dir .` of a tiny `tunelab tune`, and the experiment read back from the
storage both nodes reach: object storage, what a real multi-node cluster needs (a real S3 server,
moto's, in a process of its own, in place of the page's shared mount).

The commands come from that page's code block with its placeholders filled in, so the
documentation cannot drift from what is tested. Flags only a one-machine cluster needs are
added (see ISOLATION): each node its own --temp-dir, free ports for every Ray service. The
nodes are ended by their session folders, never with `ray stop` (it would end the shared test
cluster and any other Ray process of the user).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import S3_SECRET, start_s3_server_process
from tunelab.cluster import end_session, session_processes

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.heavy]

ROOT = Path(__file__).resolve().parents[2]


def readme_cluster_commands() -> list[str]:
    """The shell commands of the manual's cluster section, continuation lines joined."""
    text = (ROOT / "docs" / "how-to" / "clusters-and-gpus.md").read_text()
    section = text.split("## Running on a Ray cluster", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("#", 1)[0].rstrip() if line.lstrip().startswith("#") else line
             for line in block.replace("\\\n", " ").splitlines()]
    return [" ".join(line.split()) for line in lines if line.strip()]


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def isolation_flags(temp_dir: str, ports: list[int]) -> list[str]:
    """What a node needs beside another on the same machine (on real machines none of this is needed)."""
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    return [f"--temp-dir={temp_dir}", "--num-cpus=1", f"--object-store-memory={200 * 2**20}",
            "--disable-usage-stats", *(f"{n}={p}" for n, p in zip(names, ports))]


def test_readme_cluster_section_runs_a_job_on_a_two_node_cluster(tmp_path):
    commands = readme_cluster_commands()
    assert [c.split()[:2] for c in commands] == [["export", "RAY_AUTH_MODE=token"], ["ray", "start"], ["ray", "start"],
                                                 ["ray", "job"], ["tunelab", "report"], ["ray", "stop"]], commands
    _, head, worker, submit, report, _ = commands
    gcs_port, dashboard_port, client_port, *service_ports = free_ports(15)
    server, s3_port = start_s3_server_process()

    def fill(command: str) -> list[str]:
        command = (command.replace("HEAD_IP", "127.0.0.1").replace("WORKER_IP", "127.0.0.1")
                   .replace(":6379", f":{gcs_port}").replace("=6379", f"={gcs_port}")
                   .replace(":8265", f":{dashboard_port}").replace("=8265", f"={dashboard_port}")
                   .replace("file:///mnt/shared/runs", "s3://bkt/runs")
                   .replace("digits-job-report", str(tmp_path / "report")))
        return shlex.split(command)

    bin_dir = str(Path(sys.executable).parent)  # `ray` and `tunelab` of this environment
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("AWS_")}
    env.update(PATH=bin_dir + os.pathsep + env.get("PATH", ""), RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    # Every node, the job's driver and its trials reach the store as a Ray user configures it: the
    # nodes inherit these variables from `ray start`, the submitting shell's from its own.
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}", AWS_ACCESS_KEY_ID="AKID",
               AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    # Short folders: Ray's socket paths live under them (a Unix socket path is limited to 107 bytes).
    head_temp, worker_temp = tempfile.mkdtemp(prefix="tl-h-"), tempfile.mkdtemp(prefix="tl-w-")

    def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    with ExitStack() as cleanup:
        cleanup.callback(lambda: (server.kill(), server.wait()))
        cleanup.callback(shutil.rmtree, head_temp, ignore_errors=True)
        cleanup.callback(shutil.rmtree, worker_temp, ignore_errors=True)
        cleanup.callback(lambda: [end_session(s) for s in sessions(head_temp, worker_temp)])
        started = run(fill(head) + [f"--ray-client-server-port={client_port}"]
                      + isolation_flags(head_temp, service_ports[:6]), timeout=120)
        assert started.returncode == 0, started.stderr[-3000:]
        joined = run(fill(worker) + isolation_flags(worker_temp, service_ports[6:]), timeout=120)
        assert joined.returncode == 0, joined.stderr[-3000:]

        job = run(fill(submit), timeout=300)
        assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
        assert "succeeded" in job.stdout + job.stderr
        assert "2 trials" in job.stdout, job.stdout[-2000:]

        # Both nodes ran a trial: each has 1 CPU and the search runs 2 trials at once.
        actors = run(["ray", "list", "actors", "--address", f"127.0.0.1:{gcs_port}", "--detail",
                      "--format", "json", "--filter", "class_name=ImplicitFunc"], timeout=60)
        assert actors.returncode == 0, actors.stderr[-2000:]
        assert len({a["node_id"] for a in json.loads(actors.stdout)}) == 2

        # Read back from the store: tunelab's report and Ray Tune's own reader.
        read = run(fill(report), timeout=120)
        assert read.returncode == 0, read.stderr[-2000:]
        assert "classifier" in read.stdout and (tmp_path / "report" / "report.md").is_file()
        assert S3_SECRET not in job.stdout + job.stderr + read.stdout + read.stderr
        import pyarrow.fs as pafs
        from ray.tune import ExperimentAnalysis

        store = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{s3_port}", scheme="http", access_key="AKID",
                                  secret_key=S3_SECRET, region="us-east-1")
        with store.open_input_stream("bkt/runs/digits-job/tunelab.json") as handle:
            record = json.loads(handle.read())
        assert sorted(record["final_statuses"].values()) in (["finished", "finished"], ["finished", "stopped"])
        analysis = ExperimentAnalysis("bkt/runs/digits-job", storage_filesystem=store)
        assert len(analysis.trials) == 2 and all(t.status == "TERMINATED" for t in analysis.trials)

        head_sessions = sessions(head_temp, worker_temp)
        assert len(head_sessions) == 2 and all(session_processes(s) for s in head_sessions)
    # Ended: exactly the processes of the two nodes' sessions, nothing left of them.
    assert not any(session_processes(s) for s in head_sessions)


def sessions(*temp_dirs: str) -> list[str]:
    """The Ray session folders under the nodes' temp folders (one each once the node started)."""
    return [os.path.realpath(latest) for t in temp_dirs if os.path.exists(latest := os.path.join(t, "session_latest"))]


@pytest.mark.slow  # Ray retries the refused connection for about 20 s before it gives up
def test_joining_a_token_cluster_without_its_token_says_how(tmp_path):
    """`ray start --head` turns token authentication on when a token exists; a tunelab without it
    gets a refused connection, which must not read as "no cluster" alone."""
    (gcs_port,) = free_ports(1)
    temp = tempfile.mkdtemp(prefix="tl-t-")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    try:
        subprocess.run(["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}", "--num-cpus=1",
                        "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
                       env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
                       check=True, capture_output=True, timeout=120)
        refused = subprocess.run(["tunelab", "tune", "classifier", "--address", f"127.0.0.1:{gcs_port}",
                                  "--storage", str(tmp_path / "runs")], env=env, capture_output=True, text=True,
                                 timeout=180)
    finally:
        for session in sessions(temp):
            end_session(session)
        shutil.rmtree(temp, ignore_errors=True)
    assert refused.returncode == 2
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("tunelab: error:")]
    assert f"--address '127.0.0.1:{gcs_port}': no Ray cluster answered" in line
    assert "set RAY_AUTH_MODE=token and its token" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
