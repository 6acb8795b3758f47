"""A trial's result files saved into the experiment as soon as the trial ends.

Ray Tune's driver writes each trial's result.json and progress.csv into a staging folder of its
Ray session and copies them into the experiment's storage only with its experiment snapshot
(every ~10 s, in the background). A driver killed in between (SIGKILL, the OOM killer, a lost
node) left an ended trial with its final checkpoint and no results in the experiment: `report`
refused the folder, and `resume` trained the trial again. Saving an ended trial's files at once
closes that gap; `tunelab.late_trials.close_trials_ended_on_disk` then finds the trial ended.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ray.tune import Callback

from tunelab.core.files import atomic_write_bytes


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
        try:
            save_trial_files_now(trial)
        except Exception as exc:  # noqa: BLE001 - any storage error; Ray's own copy retries later
            print(f"tunelab: warning: trial {trial.trial_id}'s results could not be saved into the experiment "
                  f"yet ({type(exc).__name__}: {exc}); Ray copies them with its next snapshot", file=sys.stderr)


def save_trial_files_now(trial) -> None:
    """Copy a trial's staged result files into its folder in the storage now, over what an earlier
    copy left there. On a local storage each file is replaced whole (written beside, then renamed):
    a reader of the experiment (report, a tracker, a test polling it) never sees one half written.
    On an object store each file is one upload, as Ray's own copy does."""
    import pyarrow.fs

    from tunelab.compat.ray import trial_staging, upload_folder

    staging, filesystem, path = trial_staging(trial)
    if not staging or not os.path.isdir(staging):
        return  # the trial ended before it wrote anything
    if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        upload_folder(staging, filesystem, path)
        return
    source, target = Path(staging), Path(path)
    if target.is_symlink():
        raise OSError(f"its folder {path} is a symbolic link (to {os.readlink(target)}); tunelab never writes through one")
    for file in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
        data = file.read_bytes()
        atomic_write_bytes(target / file.relative_to(source), lambda handle, data=data: handle.write(data))
