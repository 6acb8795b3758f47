"""A concise live view of a search: one line per trial that ends, and a summary every 30 s."""
from __future__ import annotations

import math
import sys
import time

from ray.tune import Callback

from analysis.load import status_from
from trainables import metrics as M


# trial_id -> Ray's status at the end of the driver's last step. Ray Tune marks every trial still
# running TERMINATED when it cleans up after Ctrl-C/SIGTERM, after its final snapshot recorded them
# RUNNING; the driver reads this to record those trials `incomplete`. The callback instance may be
# one unpickled by `Tuner.restore`, hence a module-level board rather than an attribute.
LAST_STATUSES: dict[str, str] = {}


class ProgressLines(Callback):
    def __init__(self, num_samples: int, metric: str, max_epochs: int, every_s: float = 30.0):
        self.num_samples, self.metric, self.max_epochs, self.every_s = num_samples, metric, max_epochs, every_s
        self.best = -math.inf
        self.ended = 0
        self.last_summary = time.monotonic()

    def _line(self, text: str) -> None:
        print(f"[tunelab] {text}", file=sys.stderr, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(M.VAL_ACC_BEST if self.metric == M.VAL_ACC else self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.best = max(self.best, value)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        last = trial.last_result or {}
        epochs = int(last.get(M.EPOCH, 0))
        how = status_from(epochs, bool(last.get(M.DIVERGED)), False, self.max_epochs)
        how = "stopped by ASHA" if how == "stopped" else how
        value = last.get(M.VAL_ACC_BEST, last.get(self.metric, float("nan")))
        self._line(f"trial {trial.trial_id} {how} after {epochs} epochs, best {self.metric} {value:.4f} "
                   f"({self.ended}/{self.num_samples} done)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended += 1
        self._line(f"trial {trial.trial_id} errored; traceback in {trial.path}/error.txt "
                   f"({self.ended}/{self.num_samples} done)")

    def on_step_end(self, iteration, trials, **info):
        LAST_STATUSES.update({t.trial_id: str(t.status) for t in trials})
        now = time.monotonic()
        if now - self.last_summary < self.every_s:
            return
        self.last_summary = now
        running = sum(1 for t in trials if t.status == "RUNNING")
        best = f"{self.best:.4f}" if math.isfinite(self.best) else "n/a"
        self._line(f"{self.ended}/{self.num_samples} trials done, {running} running, best {self.metric} {best}")
