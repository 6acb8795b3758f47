"""`--stop-at`: end a whole search once any trial reaches a value of the tuned metric."""
from __future__ import annotations

from ray.tune.stopper import Stopper


class StopWhenReached(Stopper):
    """Stops every trial once one reports `metric` at or beyond `value` (above for max, below for min).

    Ray pickles this with the experiment, so a resumed search keeps both the goal and whether it
    was already met.
    """

    def __init__(self, metric: str, mode: str, value: float):
        self.metric, self.mode, self.value = metric, mode, value
        self.reached = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        current = result.get(self.metric)
        if current is not None and (current >= self.value if self.mode == "max" else current <= self.value):
            self.reached = True
        return self.reached

    def stop_all(self) -> bool:
        return self.reached
