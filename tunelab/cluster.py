"""The Ray cluster a search runs on: joining or starting it (failing fast when it does not answer),
checking what it can give before anything is written, and ending what a killed driver's private
instance left behind."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.compat.ray import recorded_cluster_address, session_dir
from tunelab.core.storage import is_uri
from tunelab.core.errors import ConfigError
from tunelab.core.processes import is_running
from tunelab.signals import route_sigterm_to_sigint

if TYPE_CHECKING:
    from tunelab.tune_options import TuneOptions


def starts_private_instance(address: str | None) -> bool:
    """Whether connect_ray will start a Ray instance of its own here (rather than join one)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        return address == "local"
    try:
        recorded = recorded_cluster_address()
    except ConnectionError:
        return True  # no cluster runs on this machine
    except Exception:  # Ray's private helper moved: decide after connecting instead
        return False
    return recorded is None or not answers(recorded)


def recorded_cluster() -> str | None:
    """The cluster recorded on this machine (by `ray start`, or a Ray instance that ran here), which
    ray.init() without an address would join; None when there is none."""
    try:
        return recorded_cluster_address()
    except Exception:  # none recorded (ConnectionError), or Ray's private helper moved
        return None


def answers(address: str, timeout_s: float = 2.0) -> bool:
    try:
        probe_address(address, timeout_s)
        return True
    except ConfigError:
        return False


def local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_local_resources(opts: TuneOptions) -> None:
    """On a private instance the resources are this machine's: refuse what it cannot give before Ray starts."""
    cpus = local_cpus()
    if opts.cpus_per_trial > cpus:
        raise ConfigError(f"--cpus-per-trial {opts.cpus_per_trial:g} is more than this machine's {cpus} CPUs; "
                          f"allowed: (0, {cpus}], or join a larger cluster with --address")
    if opts.gpus_per_trial > 0:
        import torch

        gpus = torch.cuda.device_count()
        if gpus < opts.gpus_per_trial:
            raise ConfigError(f"--gpus-per-trial {opts.gpus_per_trial:g} but this machine has {gpus} GPUs; "
                              "use --gpus-per-trial 0 or join a cluster with GPUs (--address)")


def check_reachable(address: str | None) -> None:
    """Before the data loads: a cluster named by --address or $RAY_ADDRESS must answer."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address and not ray.is_initialized():
        probe_address(address)


def probe_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds when a `host:port` cluster address does not answer: ray.init retries an
    unreachable GCS for minutes, inside native code that defers SIGTERM and Ctrl-C."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not valid; expected HOST:PORT (e.g. 10.0.0.5:6379), auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--address {address!r}: no Ray cluster answered within {timeout_s:g} s "
                          f"({getattr(exc, 'strerror', None) or exc}); start one with `ray start --head` "
                          "or check the address") from None


def connect_ray(address: str | None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS), else start a local instance (dashboard off)."""
    import ray

    # Forced snapshots (num_to_keep) are expected here; Ray's warning about them is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's own tables and banners stay off stdout; tunelab prints its concise lines instead.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address:
        probe_address(address)
    elif (recorded := recorded_cluster()) is not None and not answers(recorded):
        # A killed instance leaves its address recorded; ray.init() would wait on it for minutes.
        print(f"tunelab: the Ray cluster recorded on this machine ({recorded}) does not answer (a stale record "
              "of a stopped instance); starting a local instance", file=sys.stderr)
        address = "local"
    try:
        if address and address != "local":
            ray.init(address=address, **quiet)
        else:
            with ray_processes_in_their_own_session():
                ray.init(address=address, include_dashboard=False, dashboard_host="127.0.0.1", **quiet)
    except ConnectionError as exc:
        hint = ""
        if address and address != "local" and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            # The port answered (probe_address) but Ray refused us: most often a cluster started with
            # token authentication (`ray start` turns it on when ~/.ray/auth_token exists).
            hint = ("; if that cluster uses token authentication, set RAY_AUTH_MODE=token and its token "
                    "(RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        raise ConfigError(f"--address {address!r}: no Ray cluster answered ({str(exc).splitlines()[0]}){hint}") from None
    route_sigterm_to_sigint()  # ray.init replaced it with a native handler that aborts


@contextlib.contextmanager
def ray_processes_in_their_own_session():
    """Processes started meanwhile (a private instance's GCS, raylet and agents; the raylet's
    workers inherit it) get a session of their own. A batch scheduler stops a job with
    `kill -TERM -PGID`: the signal then reaches this driver alone, which stops its search, saves it
    and shuts Ray down itself, rather than losing the GCS first and hanging on it. Ray 2.60 offers
    no option for this (it only blocks SIGINT in its children), so Popen's default is changed
    while ray.init runs; Ray still ends them when the driver ends (its kernel fate-sharing is kept)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(os, "setsid"):
        yield
        return
    original = subprocess.Popen.__init__

    def in_own_session(self, *args, **kwargs):
        kwargs.setdefault("start_new_session", True)
        original(self, *args, **kwargs)

    subprocess.Popen.__init__ = in_own_session
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original


def check_cluster(opts: TuneOptions, storage: str) -> None:
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if opts.gpus_per_trial > 0 and gpus < opts.gpus_per_trial:
        raise ConfigError(f"--gpus-per-trial {opts.gpus_per_trial:g} but the Ray cluster has {gpus:g} GPUs; "
                          "use --gpus-per-trial 0 or connect to a cluster with GPUs (--address)")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n.get("Resources", {}).get("CPU", 0) for n in nodes), default=0)
    if opts.cpus_per_trial > largest:  # a trial runs on one node
        raise ConfigError(f"--cpus-per-trial {opts.cpus_per_trial:g} is more than the largest node's "
                          f"{largest:g} CPUs; allowed: (0, {largest:g}]")
    if len(nodes) > 1 and not is_uri(storage):
        raise ConfigError(f"--storage {storage!r} is a local path but the cluster has {len(nodes)} nodes; use storage "
                          "every node can reach (e.g. s3://bucket/runs, or file:///mnt/shared/runs on a shared mount)")


# ----------------------------------------------------------------------------- the Ray session

def ray_session(private: bool) -> dict[str, Any]:
    """What the lock records about the Ray instance, so a later `resume` can clean up after a killed driver."""
    if not private:
        return {}
    try:
        return {"ray_session": session_dir()}
    except Exception:  # private API: without it, leftovers are not reaped (and nothing else changes)
        return {}


def driver_session() -> dict[str, Any]:
    """What the lock records about the Ray session this driver joined (private or a cluster's), so
    a later `resume` on this machine finds the result files the driver left in its staging folder
    there (tunelab.staged_files.recover_staged_trial_files)."""
    try:
        return {"driver_session": session_dir()}
    except Exception:  # private API: without it, nothing is recovered from staging (and nothing else changes)
        return {}


def _names_session(pid_dir: Path, session_dir: str) -> bool:
    """Whether a process belongs to a Ray session: its command line names the session folder, or
    (agents rename their command line) one of its open files lies in it (its logs)."""
    if session_dir in (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
        return True
    for fd in (pid_dir / "fd").iterdir():
        try:
            if os.readlink(fd).startswith(session_dir + "/"):
                return True
        except OSError:
            continue
    return False


def session_processes(session_dir: str) -> list[int]:
    """Pids of this user's processes of the Ray session at `session_dir` (raylet, GCS, agents, workers)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(entry.name)
            if pid == os.getpid() or entry.stat().st_uid != os.getuid() or not is_running(pid):
                continue
            if _names_session(entry, session_dir):
                pids.append(pid)
        except (OSError, ValueError):
            continue
    return pids


SESSION_NAME = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_(?P<pid>\d+)")


def stale_session(previous: dict[str, Any]) -> str | None:
    """The Ray session folder of the killed driver `previous` (a lock's record) if what it names
    can only be that: on this host, the recorded driver no longer runs, and the folder is a real
    Ray session folder of this user started by that very pid (Ray names it `session_TIME_PID`).
    A record is read from a file anyone with write access to the storage could have written: it
    must not choose which of this user's processes to end."""
    session, pid = previous.get("ray_session"), previous.get("pid")
    if not isinstance(session, str) or previous.get("host") != socket.gethostname():
        return None
    folder = Path(session)
    match = SESSION_NAME.fullmatch(folder.name)
    if match is None or str(pid) != match["pid"] or _pid_runs(pid):
        return None
    try:
        if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            return None
    except OSError:
        return None
    return str(folder)


def _pid_runs(pid: Any) -> bool:
    try:
        return is_running(int(pid))
    except (TypeError, ValueError):
        return False


def reap_stale_session(previous: dict[str, Any]) -> None:
    """End what is left of the private Ray instance of a killed driver on this host (a SIGKILLed
    driver leaves its raylet, GCS and agent processes running); see `stale_session`."""
    session = stale_session(previous)
    if session is None:
        return
    pids = session_processes(session)
    if not pids:
        return
    print(f"tunelab: ending {len(pids)} leftover Ray processes of the killed run ({Path(session).name})",
          file=sys.stderr)
    end_session(session)


def end_session(session_dir: str, grace_s: float = 5.0) -> list[int]:
    """End every process of this user's Ray session at `session_dir` (SIGTERM, then SIGKILL after
    `grace_s`), and no other: `ray stop` would end every Ray process of the user on this machine.
    Returns the pids still running (none, unless they ignore SIGKILL)."""
    import signal

    pids = session_processes(session_dir)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(is_running(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if is_running(p)]
        if not pids:
            break
    return pids
