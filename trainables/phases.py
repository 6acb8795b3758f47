"""Timestamps of a run's phases for benchmarks/overhead.py, written only when TUNELAB_PHASE_LOG
names a file (one JSON object a line; appended by the driver and every trial process alike, each
line one write of a few hundred bytes on an O_APPEND file, so lines from processes never mix).
Unset, `mark` costs one dictionary lookup."""
from __future__ import annotations

import json
import os
import time

PHASE_LOG_ENV = "TUNELAB_PHASE_LOG"


def mark(phase: str, **fields) -> None:
    path = os.environ.get(PHASE_LOG_ENV)
    if not path:
        return
    line = json.dumps({"phase": phase, "t": time.time(), "pid": os.getpid(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def trial_id() -> str | None:
    """The Ray Tune trial this process runs, if any (only asked for when the log is on)."""
    if not os.environ.get(PHASE_LOG_ENV):
        return None
    try:
        from ray import tune

        return tune.get_context().get_trial_id()
    except Exception:  # not inside a trial
        return None
