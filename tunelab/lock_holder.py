"""Who holds an experiment's lock: the record a lock file (or an object store's lease) keeps."""
from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

from tunelab.core.redaction import redact


def holder_record(**extra: Any) -> dict[str, Any]:
    """This driver: host, pid, command (passwords redacted), start time, and `extra` facts."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "command": redact(" ".join(["tunelab", *sys.argv[1:]]))[:500],
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}


def describe_holder(holder: dict[str, Any]) -> str:
    """The holder in words; fields read from a file anyone with access to the storage may have
    written are shortened and redacted, and a record without them says so."""
    if not any(holder.get(key) for key in ("pid", "host")):
        return "a holder that recorded no pid or host"

    def shown(key: str) -> str:
        return redact(str(holder.get(key)))[:120]

    return f"pid {shown('pid')} on host {shown('host')!r} since {shown('since')} ({shown('command')})"
