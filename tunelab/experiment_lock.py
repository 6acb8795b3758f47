"""One writer per experiment.

`tune`, `resume` and `--overwrite` hold an exclusive lock, a file beside the experiment
(`STORAGE/.NAME.lock`) so it exists before the folder does and survives `--overwrite`. It is taken
on the experiment's resolved identity (`experiment_identity`): the lock lives beside the real
folder, so `x`, `./x/`, a symlink to x and `file://` of x share one lock, and nothing is written
beside an alias. The kernel releases the lock when its holder dies however it dies, so a lock file
left by a dead process on this host is taken over (with a message); one recorded by another host
is refused, naming it, since that process cannot be checked from here. On object storage the lock
is a lease object with a heartbeat (tunelab.object_store_lease).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tunelab.core.storage import experiment_identity, local_path
from tunelab.core.errors import ConfigError
from tunelab.core.processes import is_running
from tunelab.core.redaction import redact
from tunelab.lock_holder import describe_holder, holder_record
from tunelab.trainables.fileio import open_no_follow


def lock_path(experiment: str) -> Path | None:
    """The lock file of an experiment, beside its real folder: every spelling of one experiment (`x`,
    `./x/`, a symlink, file://) is one identity, so it has one lock. None for remote storage."""
    if local_path(experiment) is None:
        return None
    real = Path(experiment_identity(experiment))
    return real.parent / f".{real.name}.lock"


def _read_holder(handle) -> dict[str, Any]:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # not a record (nested past the limit too)
        return {}
    return holder if isinstance(holder, dict) else {}


class ExperimentLock:
    """An exclusive lock on one experiment, held from `acquire()` until `release()` (or death)."""

    def __init__(self, experiment: str):
        self.experiment = experiment
        self.path = lock_path(experiment)
        self.handle = None
        self.previous: dict[str, Any] = {}  # the stale holder taken over, if any
        self.lease = None  # remote storage's lease object (tunelab.object_store_lease)

    def acquire(self) -> "ExperimentLock":
        if self.path is None:
            return self._lease()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.fdopen(open_no_follow(self.path, "lock file"), "r+", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--storage {str(self.path.parent)!r} is not writable: {exc.strerror}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(handle)
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ConfigError(f"experiment {self._shown()} is in use by {describe_holder(holder)}; wait for it to end "
                              f"or stop it (lock: {self.path})") from None
        holder = self._own(_read_holder(handle))
        if holder and holder.get("host") != socket.gethostname():
            handle.close()
            raise ConfigError(f"experiment {self._shown()} is locked by {describe_holder(holder)}, another host; if "
                              f"that run has ended, delete {self.path} and try again")
        if holder and holder.get("pid") != os.getpid():
            self.previous = holder
            state = "still running but not holding it" if is_running(holder.get("pid")) else "no longer running"
            print(f"tunelab: taking over the stale lock of {describe_holder(holder)} ({state})", file=sys.stderr)
        self.handle = handle
        self._write(holder_record(experiment=self.recorded_identity))
        return self

    def _lease(self) -> "ExperimentLock":
        """Remote storage: a lease object with a heartbeat (tunelab.object_store_lease)."""
        from tunelab.object_store_lease import ObjectStoreLease

        self.lease = ObjectStoreLease(self.experiment, holder_record(experiment=self.recorded_identity)).acquire()
        self.previous = self._own(self.lease.previous)
        return self

    @property
    def identity(self) -> str:
        return experiment_identity(self.experiment)

    @property
    def recorded_identity(self) -> str:
        """The identity the lock records: a local folder's real path; on object storage the
        bucket and path alone (no credentials, no endpoint query: the lease lives in that store,
        and one experiment spelled with AWS_ENDPOINT_URL or with the query is one experiment)."""
        if self.path is not None:
            return self.identity
        parts = urlsplit(self.identity)
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"

    def _own(self, holder: dict[str, Any]) -> dict[str, Any]:
        """The lock's record if it was written for this experiment, else {}: a lock file copied
        with a storage folder names the original's driver and Ray session, and `resume` ends a killed
        driver's Ray processes and reads its staging folder from that record. Records from before
        the field are taken as they are."""
        recorded = holder.get("experiment")
        if recorded is None or redact(str(recorded)) == redact(self.recorded_identity):
            return holder
        where = self.path if self.path is not None else "lease"
        print(f"tunelab: the lock {where} was written for {redact(str(recorded))[:300]!r}, not this experiment "
              "(a copied folder?); its record is ignored", file=sys.stderr)
        return {}

    def _shown(self) -> str:
        """The experiment as the user wrote it, and what it is when that differs (an alias)."""
        real = self.identity
        return repr(self.experiment) + (f" (= {real})" if real != self.experiment else "")

    def _write(self, holder: dict[str, Any]) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(json.dumps(holder))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def note(self, **extra: Any) -> None:
        """Add facts to the holder record (e.g. the Ray session this driver started)."""
        if self.lease is not None:
            self.lease.holder = holder_record(experiment=self.recorded_identity, **extra)  # in the next renewal
        if self.handle is not None:
            self._write(holder_record(experiment=self.recorded_identity, **extra))

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        if self.handle is None:
            return
        self.handle.seek(0)
        self.handle.truncate()  # an empty lock file is a free lock; removing it would race a waiting opener
        self.handle.close()
        self.handle = None

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
