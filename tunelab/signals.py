"""SIGTERM ends a driver the way Ctrl-C does.

Cluster schedulers, `kill` and `ray job stop` send SIGTERM. Ray's core worker installs a native
handler for it when `ray.init` runs (it aborts the process with exit 134 and no state saved), so
tunelab installs its own at start-up and again right after connecting to Ray. The handler raises
SIGINT: inside a search Ray Tune's own handler stops the trials and saves the experiment
(resumable, exit 130); anywhere else Python raises KeyboardInterrupt (exit 130).
"""
from __future__ import annotations

import os
import signal
import threading


def _terminate_as_interrupt(signum, frame) -> None:
    os.kill(os.getpid(), signal.SIGINT)


def route_sigterm_to_sigint():
    """Install the handler (main thread only); returns the handler it replaced, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminate_as_interrupt)
