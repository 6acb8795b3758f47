"""Whether a process is still running: the one answer every lock, lease and cleanup shares."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def is_running(pid: Any) -> bool:
    """Alive and not a zombie (an ended child its parent has not reaped yet). `pid` as recorded (an
    int, or its digits): anything else, and 0 or less, is no running process. Another user's process
    of that pid counts as running. Without /proc (not Linux) a zombie counts as running."""
    if isinstance(pid, bool) or not isinstance(pid, (int, str)):
        return False
    try:
        pid = int(pid)
    except ValueError:
        return False
    if pid <= 0:
        return False  # 0 and negative pids name process groups to os.kill, not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: alive by the signal check
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
