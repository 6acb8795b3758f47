"""tunelab.core.processes.is_running: the one liveness check locks, leases and cleanups share."""
import os
import subprocess
import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.core.processes import is_running


def test_this_process_runs_and_an_ended_one_does_not():
    assert is_running(os.getpid()) and is_running(str(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process (until the kernel reuses it)
    assert not is_running(child.pid)


def test_a_zombie_is_not_running():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # ended, not reaped yet: a zombie
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    try:
        assert not is_running(child.pid)
    finally:
        child.wait()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.integers(max_value=0), st.integers(min_value=2**63), st.text(), st.floats(),
                 st.booleans(), st.lists(st.integers())))
def test_a_recorded_pid_that_names_no_process_is_not_running_and_nothing_raises(pid):
    # pids come from lock files and leases anyone can edit: 0 and -1 would name process groups to
    # os.kill (-1: every process we may signal), a huge number overflows it
    if isinstance(pid, str):
        try:
            if 0 < int(pid) < 2**63:
                return  # the digits of a pid that may run (" 1" is init)
        except ValueError:
            pass
    assert is_running(pid) is False
