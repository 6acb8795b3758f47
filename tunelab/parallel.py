"""Several `tunelab tune` searches at once on one Ray cluster (`compare --parallel`).

Each search is its own driver process, `tunelab tune ... --json` with RAY_ADDRESS naming this
cluster: exactly the command a user would type, so each keeps its own Optuna study, experiment
folder, lock, time budget and Ctrl-C handling (Tune's stop handler belongs to a process's main thread; two Tuners in
one process would share it). Their progress lines are relayed prefixed with the method, and kept
whole in LOG_DIR/METHOD.log.

Each driver runs in its own session, so a Ctrl-C at the terminal reaches this process only; it
passes exactly one SIGINT on to every driver (a second SIGINT would make Tune stop without
saving) and waits for them to save their experiments.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tunelab.core.errors import ConfigError
from tunelab.core.processes import is_running
from tunelab.trainables.fileio import open_no_follow
from tunelab.tune_options import TuneOptions
from tunelab.experiments import experiment_path, normalise_storage
from tunelab.options import to_argv
from tunelab.compare_log import PREFIX
from tunelab.core.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED

PARENT_ENV = "TUNELAB_COMPARE_PID"  # set for the drivers compare starts: the pid they serve


class SearchFailed(RuntimeError):
    """A search's driver ended without a result summary (it crashed); its log says why."""


class _Driver:
    """One running `tunelab tune` process: its stderr relayed and logged, its stdout kept."""

    def __init__(self, method: str, command: list[str], env: dict[str, str], log_path: Path):
        self.method, self.log_path = method, log_path
        # a continued search adds to its log ("a" seeks to the end); never through a planted link
        self.log = os.fdopen(open_no_follow(log_path, "compare log"), "a", encoding="utf-8")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env, start_new_session=True)
        self.stdout: list[str] = []
        self.tail: list[str] = []  # its last stderr lines, for the error message
        self.readers = [threading.Thread(target=self._relay, daemon=True),
                        threading.Thread(target=lambda: self.stdout.extend(self.process.stdout), daemon=True)]
        for reader in self.readers:
            reader.start()

    def _relay(self) -> None:
        for line in self.process.stderr:
            self.log.write(line)
            self.log.flush()
            print(f"[{self.method}] {line}", end="", file=sys.stderr, flush=True)
            self.tail = (self.tail + [line.rstrip("\n")])[-20:]

    def wait(self) -> int:
        code = self.process.wait()
        for reader in self.readers:
            reader.join()
        self.log.close()
        return code

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, sig)
            except OSError:
                pass


def driver_command(opts: TuneOptions, resume: bool = False) -> list[str]:
    """The `tunelab tune` command line of `opts`; with `resume`, the `tunelab resume` one of its experiment."""
    if resume:
        budget = [f"--time-budget={opts.time_budget}"] if opts.time_budget is not None else []
        return [sys.executable, "-m", "tunelab", "resume", experiment_path(normalise_storage(opts.storage), opts.name),
                *budget, "--json"]
    return [sys.executable, "-m", "tunelab", "tune", opts.method, *to_argv(opts), "--json"]


def cluster_address() -> str:
    """The address of the cluster this process is connected to, for other drivers to join."""
    import ray

    return ray.get_runtime_context().gcs_address


def run_drivers(searches: dict[str, TuneOptions], log_dir: Path,
                resume: set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Run every search at once (those in `resume` continued from their experiments); returns each
    method's `tunelab tune --json` summary.

    Raises KeyboardInterrupt when Ctrl-C/SIGTERM stopped them (their experiments are resumable),
    ConfigError when one refused its options, SearchFailed when one crashed."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # The drivers join this cluster through RAY_ADDRESS, not --address: an address given on the
    # command line is recorded with the experiment for `resume`, and a private instance's address
    # is gone when compare ends (resume then does what ray.init does, as after a plain tune).
    env = {**os.environ, "RAY_ADDRESS": cluster_address(), PARENT_ENV: str(os.getpid())}
    drivers = [_Driver(method, driver_command(opts, method in resume), env, log_dir / f"{method}.log")
               for method, opts in searches.items()]
    try:
        codes = [driver.wait() for driver in drivers]
    except KeyboardInterrupt:
        _stop(drivers)
        _say_resumable(searches)
        raise
    if EXIT_INTERRUPTED in codes:  # a driver was stopped from outside (e.g. `kill -INT` of its pid)
        _say_resumable(searches)
        raise KeyboardInterrupt
    return {driver.method: _summary(driver, code) for driver, code in zip(drivers, codes)}


def _stop(drivers: list[_Driver]) -> None:
    """One SIGINT each, then wait for them to save; a second Ctrl-C kills them (their experiments
    stay resumable from their last checkpoints)."""
    print(f"{PREFIX} interrupted: asking every search to stop and save its experiment",
          file=sys.stderr, flush=True)
    for driver in drivers:
        driver.signal(signal.SIGINT)
    try:
        for driver in drivers:
            driver.wait()
    except KeyboardInterrupt:
        for driver in drivers:
            driver.signal(signal.SIGKILL)
        raise


def _say_resumable(searches: dict[str, TuneOptions]) -> None:
    for opts in searches.values():
        path = experiment_path(normalise_storage(opts.storage), opts.name)
        print(f"{PREFIX} {opts.method}: resumable with `tunelab resume {path}`", file=sys.stderr, flush=True)


def _summary(driver: _Driver, code: int) -> dict[str, Any]:
    if code == EXIT_BAD_INPUT:
        message = next((line for line in reversed(driver.tail) if "error:" in line), f"exit {code}")
        raise ConfigError(f"the {driver.method} search refused its options: {message.split('error:', 1)[-1].strip()}")
    lines = "".join(driver.stdout).strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise SearchFailed(f"the {driver.method} search ended with exit code {code} and no summary; "
                           f"its log: {driver.log_path}") from None


def stop_when_orphaned(poll_s: float = 1.0, grace_s: float = 30.0) -> None:
    """In a driver compare started: if compare dies without stopping it (SIGKILL, a crash), stop
    this search as Ctrl-C would (saved, resumable), and exit after `grace_s` if that hangs (the
    cluster may have been compare's own and gone with it). A driver in its own session would
    otherwise run on unattended. On Linux the kernel signals the moment compare dies
    (PR_SET_PDEATHSIG); a watcher thread polling the parent pid is the fallback, and the exit."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return
    if os.getppid() != int(parent) and is_running(parent):
        return  # not started by that compare: the variable leaked into a process of another parent
    _take_sigint()
    sys.stdout, sys.stderr = _PipeGuard(sys.stdout), _PipeGuard(sys.stderr)
    _signal_when_parent_dies(int(parent))
    threading.Thread(target=_watch_parent, args=(int(parent), poll_s, grace_s), daemon=True,
                     name="tunelab-orphan-watch").start()


_ORPHAN_STOP = threading.Lock()  # held once stopping has begun: one SIGINT only (a second makes
                                 # Tune stop without saving)


def _stop_as_orphan() -> None:
    """Silence the pipes to the dead compare, then stop the search as one Ctrl-C does; once."""
    if not _ORPHAN_STOP.acquire(blocking=False):
        return
    _silence_closed_pipes()
    os.kill(os.getpid(), signal.SIGINT)


class _PipeGuard:
    """stdout or stderr of a driver, pipes that compare reads. When compare dies the kernel signals
    at once, but a write already under way in any thread meets the closed pipe first: it would raise
    BrokenPipeError into the search instead of letting it save. Here it silences the pipes, writes
    again (to /dev/null) and stops the search as the signal would have."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._orphaned()
            return self._stream.write(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._orphaned()
            self._stream.flush()

    def _orphaned(self) -> None:
        _silence_closed_pipes()
        _stop_as_orphan()


def _take_sigint() -> None:
    """A driver stops on SIGINT (compare's, or its own when orphaned). One started from a shell
    script's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt;
    the driver has a session of its own, so no terminal's Ctrl-C can reach it: take SIGINT back."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _signal_when_parent_dies(parent: int) -> None:
    """Ask Linux for SIGUSR2 when the parent dies (main thread only; nothing where unavailable)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return
    try:
        import ctypes

        signal.signal(signal.SIGUSR2, lambda signum, frame: _stop_as_orphan())
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGUSR2), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError, ValueError):
        pass  # the watcher thread still stops the search


def _watch_parent(parent: int, poll_s: float, grace_s: float) -> None:
    """Nothing in here may end this thread early: compare's end closes the pipes of our stdout and
    stderr, and a write to them raises BrokenPipeError (it once killed the watcher before it
    stopped the search, and the drivers ran on as orphans)."""
    import time

    while os.getppid() == parent:
        time.sleep(poll_s)
    _stop_as_orphan()
    time.sleep(grace_s)
    os._exit(EXIT_INTERRUPTED)


def _silence_closed_pipes() -> None:
    """Point stdout and stderr, pipes to the dead compare, at /dev/null: the search's progress lines
    and its summary then go nowhere instead of raising BrokenPipeError in the search as it saves."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass
