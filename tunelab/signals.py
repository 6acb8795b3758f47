"""SIGTERM ends a driver the way Ctrl-C does.

Cluster schedulers, `kill` and `ray job stop` send SIGTERM. Ray's core worker installs a native
handler for it when `ray.init` runs (it aborts the process with exit 134 and no state saved), so
tunelab installs its own at start-up and again right after connecting to Ray. The handler raises
SIGINT: inside a search Ray Tune's own handler stops the trials and saves the experiment
(resumable, exit 130); anywhere else Python raises KeyboardInterrupt (exit 130), also where SIGINT
itself is ignored (a background job of a shell script).
"""
from __future__ import annotations

import os
import signal
import threading


STOP_REQUESTED = threading.Event()  # set once Ctrl-C/SIGTERM asked this process to stop


def _terminate_as_interrupt(signum, frame) -> None:
    STOP_REQUESTED.set()
    if not callable(signal.getsignal(signal.SIGINT)):
        # SIGINT ignored (a shell script's background job inherits that) or not Python's: a SIGINT
        # to ourselves would do nothing, so stop here as Ctrl-C would.
        raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGINT)


def stop_requested() -> bool:
    """Whether a stop was asked for, also one that Tune's handler took during a search which then
    finished anyway (its last trials ended before they could be stopped): compare must not go on
    to its next phase after it."""
    return STOP_REQUESTED.is_set()


def route_sigterm_to_sigint():
    """Install the handler (main thread only); returns the handler it replaced, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminate_as_interrupt)
