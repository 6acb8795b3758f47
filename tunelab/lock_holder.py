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
    return (f"pid {holder.get('pid')} on host {holder.get('host')!r} since {holder.get('since')} "
            f"({holder.get('command')})")
