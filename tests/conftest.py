"""Shared fixtures: tiny datasets written in their original on-disk formats."""
from __future__ import annotations

import pickle
from pathlib import Path

import os

import numpy as np
import pytest
import torch

# Under pytest-xdist each worker gets one of the cores: two torch threads per worker on a 2-core
# machine made the fast suite spin 3x the CPU and take twice as long.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def write_cifar10(folder: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> dict:
    """Write CIFAR-10 python batches exactly as the original archive does (protocol 2, bytes keys).

    Returns the arrays written, so tests can check that pixels and labels round-trip.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}

    def batch(name: str, n: int, label_offset: int) -> None:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int((i + label_offset) % 10) for i in range(n)]
        content = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                   b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(content, handle, protocol=2)
        written[name] = (data, np.array(labels))

    for i in range(1, 6):
        batch(f"data_batch_{i}", n_train_per_batch, i)
    batch("test_batch", n_test, 0)
    meta = {b"num_cases_per_batch": n_train_per_batch, b"num_vis": 3072,
            b"label_names": [n.encode() for n in ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                  "frog", "horse", "ship", "truck"]]}
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return written



def sigint_as_at_a_terminal() -> None:
    """preexec_fn for a child that a test Ctrl-Cs: SIGINT back to its default, as a shell gives a
    foreground command. A suite started in the background (`pytest &`, as CI may) has SIGINT
    ignored, and the child would inherit that (Python then never raises KeyboardInterrupt)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)

@pytest.fixture
def ray_must_not_start(monkeypatch):
    """Fail the test where tunelab would start or join Ray (a refusal or dry run comes before it)."""
    import tunelab.compare  # noqa: F401  before the patch: its import binds cluster's connect_ray for good

    for module in ("tunelab.driver", "tunelab.search_plan", "tunelab.compare"):
        monkeypatch.setattr(f"{module}.connect_ray", lambda address: pytest.fail("Ray must not start"))


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "cifar-10-batches-py"
    return tmp_path, write_cifar10(folder)


def write_image_folder(root: Path, classes: dict[str, int], size: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls, count in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            array = rng.integers(0, 256, size=(size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / cls / f"{i}.png")


@pytest.fixture(scope="session")
def faults_root(tmp_path_factory) -> Path:
    """The folder fault tokens go in (tunelab.trainables.faults); Ray workers see it through the job's env."""
    return tmp_path_factory.mktemp("faults")


@pytest.fixture
def faults(faults_root):
    """An empty faults folder for one test; tokens left unclaimed are removed afterwards."""
    for token in faults_root.iterdir():
        token.unlink()
    yield faults_root
    for token in faults_root.iterdir():
        token.unlink()


@pytest.fixture(scope="session")
def ray_cluster(faults_root):
    """One local two-node Ray cluster shared by every Ray test (head: 4 CPUs and 1 logical GPU).

    The GPU is logical (this machine has none): it lets tests check fractional packing, with
    trainables told `device=cpu`. Experiments on it need a URI storage (file://...), because
    tunelab refuses a plain local path on a multi-node cluster.
    """
    import os

    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # No dashboard: `ray[default]` (the cluster extra, in dev) would start one, and no test reads it.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 150 * 2**20})
    worker = cluster.add_node(num_cpus=2, object_store_memory=150 * 2**20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False,
             runtime_env={"env_vars": {"TUNELAB_FAULTS_DIR": str(faults_root)}})
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def write_cifar100(folder: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> None:
    """CIFAR-100 python files as the original archive has them: train, test, meta (fine labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        content = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                   b"fine_labels": [i % 100 for i in range(n)], b"coarse_labels": [i % 20 for i in range(n)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(content, handle, protocol=2)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}, handle, protocol=2)


# ----------------------------------------------------------------------------- a real S3 server

S3_SECRET = "hunter2"  # the secret key of the S3 fixtures' URIs (tests check it never shows)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3_server():
    """moto's S3 server on a free port with bucket `bkt`; (server, query-form URI of `bkt/runs`)."""
    import subprocess
    import sys

    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
    port = free_port()
    # In this process's threads: the `moto_server` command started from pytest answered pyarrow's
    # CompleteMultipartUpload with an empty body (every write of tunelab.json failed); this one does not.
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        subprocess.run([sys.executable, "-c", "import pyarrow.fs as f; f.S3FileSystem(endpoint_override="
                        f"'127.0.0.1:{port}', scheme='http', access_key='AKID', secret_key='{S3_SECRET}', "
                        "region='us-east-1', allow_bucket_creation=True).create_dir('bkt'); "
                        # moto's servers in one process share one store: empty what an earlier test left
                        "f.S3FileSystem(endpoint_override="
                        f"'127.0.0.1:{port}', scheme='http', access_key='AKID', secret_key='{S3_SECRET}', "
                        "region='us-east-1').delete_dir_contents('bkt')"], check=True, timeout=60)
    except BaseException:
        server.stop()
        raise
    return server, f"s3://AKID:{S3_SECRET}@bkt/runs?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"


@pytest.fixture
def s3_server():
    """moto's S3 server (moto[server], in the dev extra) on a free port with bucket `bkt`: the
    query-form URI of a storage in it, credentials included. Stopped after the test."""
    server, uri = start_s3_server()
    try:
        yield uri
    finally:
        server.stop()


def start_s3_server_process():
    """moto's S3 server in a process of its own (so a test can pause it with SIGSTOP, and so its
    store is not shared with other servers of this process) with bucket `bkt`; (process, port)."""
    import subprocess
    import sys

    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", (
        "import time, pyarrow.fs as f\n"
        "from moto.server import ThreadedMotoServer\n"
        f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start()\n"
        f"f.S3FileSystem(endpoint_override='127.0.0.1:{port}', scheme='http', access_key='AKID', "
        f"secret_key='{S3_SECRET}', region='us-east-1', allow_bucket_creation=True).create_dir('bkt')\n"
        "print('up', flush=True)\n"
        "while True: time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    if server.stdout.readline().strip() != "up":
        server.kill()
        raise RuntimeError("moto's S3 server did not start")
    return server, port
