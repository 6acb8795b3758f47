"""A concise live view of a search: one line per trial that ends, and a summary every 30 s."""
from __future__ import annotations

import math
import sys
import time

from ray.tune import Callback

from tunelab.core.redaction import redact
from tunelab.core.statuses import FINISHED_RAY_STATUSES, RayStatus, TrialStatus, status_from
from tunelab.core import metrics as M


# trial_id -> Ray's status at the end of the driver's last step. Ray Tune marks every trial still
# running TERMINATED when it cleans up after Ctrl-C/SIGTERM, after its final snapshot recorded them
# RUNNING; the driver reads this to record those trials `incomplete`. The callback instance may be
# one unpickled by `Tuner.restore`, hence a module-level board rather than an attribute.
LAST_STATUSES: dict[str, str] = {}


class ProgressLines(Callback):
    """A line per trial that ends, and a status line (every 10 s on a terminal, 30 s in a log):
    trials done and running (each running trial's epoch and val/acc), epochs consumed of the
    budget, the best value so far, and an upper bound of the time left."""

    def __init__(self, num_samples: int, metric: str, max_epochs: int, every_s: float | None = None):
        self.num_samples, self.metric, self.max_epochs = num_samples, metric, max_epochs
        self.every_s = every_s if every_s is not None else (10.0 if sys.stderr.isatty() else 30.0)
        self.best = -math.inf
        self.ended = 0
        self.last_summary = time.monotonic()
        self.started: float | None = None  # wall clock of this driver's first step (resets on resume)
        self.epochs_at_start = 0

    def _line(self, text: str) -> None:
        print(f"[tunelab] {redact(text)}", file=sys.stderr, flush=True)

    def on_step_begin(self, iteration, trials, **info):
        # The instance `resume` runs is the one pickled when the search began (nothing counted):
        # count what the restored trials had done, so "(N/M done)" and the best go on from there.
        if getattr(self, "counted_restored", False):
            return
        self.counted_restored = True
        self.ended = sum(1 for t in trials if t.status in FINISHED_RAY_STATUSES)
        for t in trials:
            self._note_best(t.last_result or {})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._note_best(result)

    def _note_best(self, result: dict) -> None:
        value = result.get(M.VAL_ACC_BEST if self.metric == M.VAL_ACC else self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.best = max(self.best, value)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        last = trial.last_result or {}
        epochs = int(last.get(M.EPOCH, 0))
        how = status_from(epochs, bool(last.get(M.DIVERGED)), False, self.max_epochs)
        how = "stopped by ASHA" if how == TrialStatus.STOPPED else how
        value = last.get(M.VAL_ACC_BEST, last.get(self.metric, float("nan")))
        self._line(f"trial {trial.trial_id} {how} after {epochs} epochs, best {self.metric} {value:.4f} "
                   f"({self.ended}/{self.num_samples} done)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended += 1
        self._line(f"trial {trial.trial_id} errored; traceback in {redact(trial.path)}/error.txt "
                   f"({self.ended}/{self.num_samples} done)")

    def on_step_end(self, iteration, trials, **info):
        LAST_STATUSES.update({t.trial_id: str(t.status) for t in trials})
        now = time.monotonic()
        if getattr(self, "started", None) is None:  # also an instance unpickled from an older experiment
            self.started, self.epochs_at_start = now, epochs_consumed(trials)
        if now - self.last_summary < self.every_s:
            return
        self.last_summary = now
        self._line(self.status_line(trials, now - self.started))

    def status_line(self, trials, elapsed_s: float) -> str:
        done = sum(1 for t in trials if t.status in FINISHED_RAY_STATUSES)
        running = [t for t in trials if t.status == RayStatus.RUNNING]
        consumed, budget = epochs_consumed(trials), self.num_samples * self.max_epochs
        best = f"{self.best:.4f}" if math.isfinite(self.best) else "n/a"
        parts = [f"{done}/{self.num_samples} trials done", f"epochs {consumed}/{budget} of the budget",
                 f"best {self.metric} {best}"]
        rate = (consumed - self.epochs_at_start) / elapsed_s if elapsed_s > 0 else 0.0
        if rate > 0:  # an upper bound: ASHA stops most trials before their full budget
            parts.append(f"time left <= {_duration((budget - consumed) / rate)}")
        shown = [f"{t.trial_id} epoch {int((t.last_result or {}).get(M.EPOCH, 0))}/{self.max_epochs} "
                 f"{_value((t.last_result or {}).get(self.metric))}" for t in running[:4]]
        more = f" +{len(running) - 4}" if len(running) > 4 else ""
        return ", ".join(parts) + (f"; running: {'; '.join(shown)}{more}" if running else "")


def epochs_consumed(trials) -> int:
    return sum(int((t.last_result or {}).get(M.EPOCH, 0) or 0) for t in trials)


def _value(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
