"""A whole copy of Ray's newest experiment snapshot, so that a resume survives a copy cut short.

Ray writes each snapshot (the experiment state, the search generator's counter, the searcher's
state) into a staging folder of its session, then copies that folder into the storage with plain
writes, in the background. A driver killed during the copy (SIGKILL, the OOM killer) leaves a file
in the storage cut short, and Ray cannot restore from it. On a local or shared-folder storage,
`KeepWholeSnapshot` bundles the staged files after Ray has written them whole and before its copy
starts, into one tar file in the experiment that is replaced whole (written beside, then renamed).
At resume, `tunelab.ray_state.put_back_whole_snapshot` writes the bundle's files in place when one
of that session was cut short.

Object stores need none of this: there each file is one upload, whole or absent.
"""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

from ray.tune import Callback

from tunelab.core.files import atomic_write_bytes
from tunelab.ray_state import SNAPSHOT_FILE, STATE_FILES, newest, session_of


class KeepWholeSnapshot(Callback):
    """Keeps the newest snapshot whole in the experiment (local and shared-folder storage only).

    A copy that fails is reported (once a session) and skipped: the search goes on, and a resume
    then depends on Ray's own copy alone, as without this callback.
    """

    def __init__(self) -> None:
        # The driver's list of trials (any trial leads to the staging folder and the storage). Ray
        # passes its own list, to which the step adds the trials it creates before that step's
        # snapshot: holding the list, not a trial, covers the first snapshot that has trials.
        self._trials: list = []
        self._warned = False

    def __getstate__(self) -> dict:
        # Ray pickles the callbacks with the experiment: trials are not for it, a warning is per session
        return {"_trials": [], "_warned": False}

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        self._trials = trials

    def get_state(self) -> None:
        # Ray calls this while it saves each snapshot, after the staged files are written whole and
        # before it copies them into the storage: the one moment a whole copy can be taken.
        if self._trials:
            try:
                keep(self._trials[0])
            except Exception as exc:  # noqa: BLE001 - any storage error; Ray's own copy goes on
                if not self._warned:
                    self._warned = True
                    print(f"tunelab: warning: the whole copy of Ray's snapshot could not be kept "
                          f"({type(exc).__name__}: {exc}); resume relies on Ray's own copy", file=sys.stderr)
        return None  # nothing of its own for Ray to save


def keep(trial) -> None:
    """Bundle the staged snapshot of the trial's experiment into SNAPSHOT_FILE in its storage folder."""
    import pyarrow.fs

    from tunelab.compat.ray import experiment_staging

    staging, filesystem, experiment = experiment_staging(trial)
    if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return
    state = newest(Path(staging), STATE_FILES[0].format("*"))
    if state is None:
        return
    session = session_of(state)
    files = [path for name in STATE_FILES if (path := Path(staging) / name.format(session)).is_file()]

    def write(handle) -> None:
        with tarfile.open(fileobj=handle, mode="w") as tar:
            for path in files:
                tar.add(path, arcname=path.name, recursive=False)

    atomic_write_bytes(Path(experiment) / SNAPSHOT_FILE, write)
