"""`--time-budget DURATION`: end a search cleanly when its wall-time budget is spent.

When the budget runs out, every trial running at that moment checkpoints at its next report (the
trainable sees the deadline, trainables/tune_reporter.py), and once each has reported, Tune's
graceful stop ends the search, the same stop as Ctrl-C: nothing is lost, and the trials left
unfinished are recorded `out_of_time` (not `errored`, not `incomplete`). `tunelab resume DIR
--time-budget 1h` continues them from those checkpoints and goes on with the search.

The budget belongs to one session (a `tune` or a `resume`), not to the experiment: the callback
Ray pickles with the experiment reads this session's deadline (`LAST`) when the session starts, and
the trainables get it through `tune.with_parameters`.
"""
from __future__ import annotations

import os
import signal
import time

from ray.tune import Callback

from tunelab.core.statuses import RayStatus
from tunelab.core.errors import ConfigError

# This session's deadline and whether the budget was spent: read by the callback (which Ray may
# have restored from a pickle), the trainables' parameters and the driver's summary.
LAST: dict = {"spent": False}
def start_session(seconds: float | None) -> float | None:
    """Set (or clear) this session's budget; returns its deadline (a Unix time), None without one."""
    LAST.pop("deadline", None)
    if seconds is None:
        return None
    import threading

    if threading.current_thread() is not threading.main_thread():
        # the stop is Tune's Ctrl-C path, whose handler exists only in the main thread
        raise ConfigError("--time-budget needs the search to run in the main thread of its process")
    LAST["deadline"] = time.time() + seconds
    return LAST["deadline"]


def session_deadline() -> float | None:
    """The Unix time this session's budget ends (None without one), for the callback, the trainables
    and the summary."""
    return LAST.get("deadline")


class TimeBudget(Callback):
    """Stops the search when this session's deadline passes, once every trial running then has
    reported (and so checkpointed) after the deadline. Acts on Tune's events (results, step ends):
    trials that wait for the stop send none, so the stop is sent from whichever event completes
    the wait."""

    def __init__(self):
        self.setup()

    def setup(self, **info) -> None:
        self.deadline = session_deadline()
        self.spent = self.stopping = False
        self.waiting: set[str] = set()
        self.reported_late: set[str] = set()  # trials with a checkpoint registered after the deadline

    def __getstate__(self) -> dict:  # pickled with the experiment: no session state
        return {}

    def __setstate__(self, state: dict) -> None:
        self.setup()

    def _check(self, trials: list) -> None:
        if self.deadline is None or self.stopping:
            return
        if not self.spent and time.time() >= self.deadline:
            self.spent = True
            self.waiting = {t.trial_id for t in trials if t.status == RayStatus.RUNNING} - self.reported_late
            LAST["spent"] = True
        if self.spent and not self.waiting:
            self.stopping = True
            os.kill(os.getpid(), signal.SIGINT)  # Tune's graceful stop, as Ctrl-C

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._check(trials)

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        # Registered after the deadline: the trial can be stopped without losing an epoch (its
        # trainable checkpoints every report past the deadline, then waits). A result without a
        # checkpoint proves nothing: it may have left the trial just before the deadline.
        if self.deadline is not None and time.time() >= self.deadline:
            self.reported_late.add(trial.trial_id)
            self.waiting.discard(trial.trial_id)
        self._check(trials)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._check(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.waiting.discard(trial.trial_id)
        self._check(trials)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.waiting.discard(trial.trial_id)
        self._check(trials)


def budget_was_spent() -> bool:
    return bool(LAST.get("spent"))


def reset() -> None:
    LAST.clear()
    LAST["spent"] = False
