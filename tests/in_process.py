"""`tunelab ARGS` run inside the test process: the exit code, stdout and stderr a subprocess would
give, without an interpreter start (torch, Ray and pandas imported again: seconds each) nor, for
`tune`, `resume` and `compare`, a Ray instance of its own: they join the one this process is
connected to (tests ask for the `ray_cluster` fixture first; `require_ray` checks it).

A subprocess stays where it proves what this cannot: signals to the process or its group,
orphaned drivers, two processes holding one lock, the installed console script, and what the
interpreter reads from the environment at start-up.

The call is the command line's own: `tunelab.cli.main(argv)` with `sys.argv` as the console
script sets it (the experiment record keeps it as the command), `env` set and `cwd` entered for
the call only, stdout and stderr (tunelab's lines, Ray's log records, warnings) captured, and a
hang bound (SIGALRM) in place of subprocess.run's timeout. What a process remembers of a stop
it was asked for (tunelab.signals: a spent --time-budget is a SIGINT to the process itself) is
cleared before and after, as a new process would start and end without it.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping


class Hung(BaseException):
    """The command ran past its hang bound (BaseException: no `except Exception` swallows it)."""


@dataclass
class Ran:
    """What subprocess.run(..., capture_output=True, text=True) returns, as far as tests read it."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def require_ray() -> None:
    """In-process tune/resume/compare must join the shared test cluster, never start Ray here:
    a private instance in the test process would outlive the test and refuse `ray_cluster` later."""
    import ray

    assert ray.is_initialized(), "ask for the ray_cluster fixture before running tune/resume/compare in-process"


@contextlib.contextmanager
def _hang_bound(timeout_s: float | None):
    if not timeout_s or threading.current_thread() is not threading.main_thread():
        yield
        return

    def hung(signum, frame):
        raise Hung(f"still running after {timeout_s} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tunelab(*args: str | os.PathLike, env: Mapping[str, str] | None = None, unset: Iterable[str] = (),
            cwd: str | os.PathLike | None = None, timeout: float | None = 300) -> Ran:
    """`tunelab ARGS` with `env` set and `unset` removed (for this call only), in `cwd`."""
    from tunelab.cli import main
    from tunelab.signals import STOP_REQUESTED

    argv = [os.fspath(a) for a in args]
    if argv and argv[0] in ("tune", "resume", "compare") and "--dry-run" not in argv:
        require_ray()
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    STOP_REQUESTED.clear()
    try:
        for name in unset:
            os.environ.pop(name, None)
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(Path(cwd))
        sys.argv = ["tunelab", *argv]
        # Ray's log handler writes to whatever sys.stderr is at the time: its records land in `err`
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _hang_bound(timeout):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse (exit 2, --version) and anything else that exits
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:  # as the interpreter does with a message
                    print(exc.code, file=sys.stderr)
                    code = 1
    finally:
        STOP_REQUESTED.clear()
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Ran(argv, code, out.getvalue(), err.getvalue())
