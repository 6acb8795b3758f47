"""A trial's result files saved into the experiment as soon as the trial ends.

Ray Tune's driver writes each trial's result.json and progress.csv into a staging folder of its
Ray session and copies them into the experiment's storage only with its experiment snapshot
(every ~10 s, in the background). A driver killed in between (SIGKILL, the OOM killer, a lost
node) left an ended trial with its final checkpoint and no results in the experiment: `report`
refused the folder, and `resume` trained the trial again. Saving an ended trial's files at once
closes that gap; `tunelab.ray_state.close_trials_ended_on_disk` then finds the trial ended.
"""
from __future__ import annotations

import sys

from ray.tune import Callback


class SaveEndedTrialFiles(Callback):
    """Copies an ended (or failed) trial's staged result files into the storage when it ends.

    Listed after the loggers, which have flushed the last result by then. A copy that fails (the
    storage unreachable) is reported and left to Ray's next periodic copy: the trial is not failed
    for it.
    """

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._save(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._save(trial)

    @staticmethod
    def _save(trial) -> None:
        from tunelab.compat.ray import save_trial_files_now

        try:
            save_trial_files_now(trial)
        except Exception as exc:  # noqa: BLE001 - any storage error; Ray's own copy retries later
            print(f"tunelab: warning: trial {trial.trial_id}'s results could not be saved into the experiment "
                  f"yet ({type(exc).__name__}: {exc}); Ray copies them with its next snapshot", file=sys.stderr)
