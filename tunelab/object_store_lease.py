"""One writer per experiment on object storage (`s3://`, `gs://`): a lease object with a heartbeat.

An object store has no file lock, and pyarrow (how Ray and tunelab write there) has no conditional
write. The lock is a small JSON object beside the experiment, `STORAGE/.NAME.lock` as on a local
disk, holding the holder's record (host, pid, command, experiment), a random token and an expiry
time. The holder rewrites it every `TTL / 4` seconds, pushing the expiry `TTL` seconds ahead.

- Taking it: a lease of another token that has not expired is refused, naming its holder. One
  that is absent or expired is written with our token, and read back after `SETTLE_S` seconds:
  of two drivers that started within that time, both read the one written last, and the other
  is refused. (Object stores with strong read-after-write consistency - S3 since 2020, GCS,
  MinIO - make the read-back see the last write.)
- Held: a renewal that reads back another token means the lease was taken over (this driver did
  not renew for `TTL` seconds: paused, or cut off from the store): the driver stops at once,
  saving nothing (exit 1), its private Ray instance ended. An expired lease whose holder still
  runs on this host (a paused driver) is not taken over.
- Released: the object is deleted if it still holds our token.
- A driver killed outright (SIGKILL, a lost node) leaves its lease until it expires: `resume`
  waits for nobody and is refused, saying when the lease expires. Expiry is read against this
  machine's clock; clocks of the hosts involved must agree to well within `TTL`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import uuid
from typing import Any

from tunelab.core.errors import ConfigError
from tunelab.core.redaction import redact
from tunelab.core.storage import experiment_identity, remote_filesystem
from tunelab.lock_holder import describe_holder

SETTLE_S = 2.0


def ttl_s() -> float:
    """Seconds a lease lasts without renewal (TUNELAB_LEASE_TTL_S, default 60; tests shorten it)."""
    raw = os.environ.get("TUNELAB_LEASE_TTL_S", "60")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 1.0 <= value <= 86400.0:
        raise ConfigError(f"TUNELAB_LEASE_TTL_S={raw!r} is not a number of seconds from 1 to 86400")
    return value


def lease_location(experiment: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path of the lease object) of a remote experiment: beside it, `.NAME.lock`."""
    # On its identity: `exp`, `exp/` and `./exp` are one experiment, so one lease.
    filesystem, path = remote_filesystem(experiment_identity(experiment))
    parent, _, name = path.rstrip("/").rpartition("/")
    return filesystem, f"{parent}/.{name}.lock"


def _expiry(lease: dict[str, Any]) -> float:
    """A lease's expiry time; one that is not a finite number (an object not ours) has expired."""
    try:
        value = float(lease.get("expires", 0))
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def _runs_here(lease: dict[str, Any]) -> bool:
    """Whether the lease's holder is a process that still runs on this host (not this one)."""
    import socket

    from tunelab.core.processes import is_running

    pid = lease.get("pid")
    return (lease.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid()
            and is_running(pid))


def _duration(seconds: float) -> str:
    if seconds > 86400 * 2:
        return "more than two days (a lease tunelab never writes: delete it if no run holds it)"
    return f"{max(seconds, 0):.0f} s"


def probe_lease(experiment: str) -> str:
    """Whether a remote experiment's lease could be taken now, without writing: refused (ConfigError)
    while another driver holds it. Returns what was found."""
    lease = ObjectStoreLease(experiment, holder={})
    try:
        current = lease.read()
    except OSError as exc:
        raise ConfigError(f"the storage of {redact(experiment)!r} cannot be reached (reading {lease.shown()}: "
                          f"{redact(str(exc).splitlines()[0])}); check its endpoint and credentials") from None
    lease.refuse_if_held(current)
    return f"lease {lease.shown()} is " + ("free (not created)" if current is None else "expired (would be taken over)")


class ObjectStoreLease:
    """The lease of one remote experiment, held from `acquire()` until `release()`."""

    def __init__(self, experiment: str, holder: dict[str, Any]):
        self.experiment = experiment
        self.filesystem, self.path = lease_location(experiment)
        self.token = uuid.uuid4().hex
        self.holder = holder
        self.ttl = ttl_s()
        self.previous: dict[str, Any] = {}  # an expired holder's record, taken over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    # ------------------------------------------------------------------ the object itself

    def read(self) -> dict[str, Any] | None:
        """The lease object as stored, or None if there is none (or it is not a lease: overwritten)."""
        import pyarrow.fs as pafs

        if self.filesystem.get_file_info(self.path).type != pafs.FileType.File:
            return None
        try:
            with self.filesystem.open_input_stream(self.path) as handle:
                lease = json.loads(handle.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):  # not a lease (JSON nested past Python's limit too)
            return None
        return lease if isinstance(lease, dict) else None

    def write(self) -> None:
        lease = {**self.holder, "token": self.token, "expires": time.time() + self.ttl}
        with self.filesystem.open_output_stream(self.path) as handle:
            handle.write(json.dumps(lease).encode("utf-8"))

    # ------------------------------------------------------------------ taking, renewing, releasing

    def acquire(self) -> "ObjectStoreLease":
        try:
            current = self.read()
            self.refuse_if_held(current)
            self.write()
            time.sleep(SETTLE_S)
            after = self.read()
        except OSError as exc:
            raise ConfigError(f"the experiment's lease {self.shown()} cannot be read or written: "
                              f"{redact(str(exc).splitlines()[0])}") from None
        if after is None or after.get("token") != self.token:
            self.refuse_if_held(after, started_with_us=True)
            raise ConfigError(f"the experiment's lease {self.shown()} did not keep what this driver wrote; "
                              "another driver is taking it: try again")
        if current is not None:
            self.previous = {k: v for k, v in current.items() if k not in ("token", "expires")}
            print(f"tunelab: taking over the expired lease of {describe_holder(current)}", file=sys.stderr)
        self._thread = threading.Thread(target=self._renew, name="tunelab-lease", daemon=True)
        self._thread.start()
        return self

    def refuse_if_held(self, lease: dict[str, Any] | None, started_with_us: bool = False) -> None:
        if lease is None or lease.get("token") == self.token:
            return
        left = _expiry(lease) - time.time()
        if left <= 0 and not started_with_us:
            if _runs_here(lease):
                raise ConfigError(f"experiment {redact(self.experiment)!r}: its lease {self.shown()} expired, but its "
                                  f"holder, {describe_holder(lease)}, still runs on this host (paused, or cut off "
                                  "from the store): stop it, or let it continue")
            return  # expired: taken over
        raise ConfigError(f"experiment {redact(self.experiment)!r} is in use by {describe_holder(lease)} (its lease "
                          f"{self.shown()} expires in {_duration(left)} unless renewed); wait for that run "
                          "to end, or for the lease to expire if it was killed; if no run holds it, delete "
                          f"{self.shown()}")

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                current = self.read()
                if current is not None and current.get("token") != self.token:
                    self.lost = True
                    self.on_lost(current)
                    return
                self.write()
            except OSError as exc:  # the store unreachable for a moment: the next renewal tries again
                print(f"tunelab: warning: the experiment's lease could not be renewed "
                      f"({redact(str(exc).splitlines()[0])}); retrying", file=sys.stderr)

    def on_lost(self, current: dict[str, Any]) -> None:
        """Another driver took the lease over (this one had not renewed it for a TTL: paused, or cut
        off from the store) and now runs the experiment: stop at once, writing nothing more. A
        graceful stop would save Ray's experiment state over the new driver's; this driver's own
        Ray instance is ended first, so its trials stop writing checkpoints (on a joined cluster,
        Ray ends the trials of a driver that exits)."""
        print(f"tunelab: error: the experiment's lease {self.shown()} was taken over by {describe_holder(current)} "
              "while this driver had not renewed it (paused, or cut off from the store); stopped at once, "
              "saving nothing: that run continues the experiment", file=sys.stderr, flush=True)
        session = self.holder.get("ray_session")
        if isinstance(session, str):
            from tunelab.cluster import end_session

            end_session(session, grace_s=2.0)
        os._exit(1)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            current = self.read()
            if current is not None and current.get("token") == self.token:
                self.filesystem.delete_file(self.path)
        except OSError:
            pass  # left to expire

    def shown(self) -> str:
        return redact(f"{self.path}")
