"""Result files a killed driver left only in its Ray staging folder, copied into the experiment
before `tunelab resume` (the first of the steps `tunelab.late_trials` lists).

Ray's driver writes each trial's result files into a staging folder of its node's Ray session
(`SESSION/artifacts/TIME/NAME/driver_artifacts`) and copies them into the experiment only with each
snapshot (~10 s). What a kill leaves there is read only from the same run, and only what the
experiment lacks is copied: nothing it holds is shortened or replaced.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tunelab.core.files import atomic_write_bytes
from tunelab.core.storage import local_path
from tunelab.core.trial_folders import parse_trial_folder_name
from tunelab.ray_state import newest, ray_trials

# Per-trial files of Ray's driver that only ever grow (a later copy holds an earlier one whole).
GROWING_FILES = ("result.json", "progress.csv")
WRITTEN_ONCE = ("params.json", "params.pkl", "error.txt", "error.pkl")


def recover_staged_trial_files(path: str, previous: dict[str, Any]) -> list[str]:
    """Copy into the experiment the trial files the killed driver `previous` (the lock's record of
    it) left in its Ray staging folder on this machine that Ray had not copied yet; returns the
    trial folders that gained any.

    Ray copies a trial's result files into the storage every ~10 s (tunelab copies an ended
    trial's at once: tunelab.trial_files); a kill in between leaves the newest epochs, and the
    whole folder of a trial created since, only in `SESSION/artifacts/...`. Only the staging folder
    of the session the lock names is read, and only if its own experiment state is this
    experiment's (same folder, every trial of ours in it): a copy of the experiment, resumed in
    another place, shares its trial ids and staging name. A file is copied only where the
    experiment lacks it, or holds a shorter copy the staged one starts with: nothing in the
    experiment is shortened or replaced by other data.
    """
    import socket

    from tunelab.compat.ray import driver_staging_folder

    folder = local_path(path)
    session = previous.get("driver_session")
    state_file = newest(folder, "experiment_state-*.json") if folder is not None else None
    if state_file is None or not isinstance(session, str) or previous.get("host") != socket.gethostname():
        return []
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if not state["trial_data"]:
        return []
    staging = Path(driver_staging_folder(session, state["trial_data"][0][0])[0])
    if not staging.is_dir() or not _same_run(staging, folder, {t.trial_id for t in ray_trials(folder)}):
        return []
    method = json.loads((folder / "tunelab.json").read_text(encoding="utf-8"))["method"]
    gained = [p.name for p in sorted(staging.iterdir())
              if p.is_dir() and not p.is_symlink() and parse_trial_folder_name(p.name, method) is not None
              and _recover_trial_folder(p, folder / p.name)]
    if gained:
        print(f"tunelab: recovered the results of {len(gained)} trial(s) that Ray had not yet copied into the "
              f"experiment when its driver was killed (from {staging})", file=sys.stderr)
    return gained


def _same_run(staging: Path, folder: Path, ours: set[str]) -> bool:
    """Whether the staging folder's experiment state is this experiment's: written for this folder,
    naming every trial of ours."""
    import os

    from tunelab.compat.ray import driver_staging_folder

    state = newest(staging, "experiment_state-*.json")
    if state is None:
        return False
    try:
        entries = json.loads(state.read_text(encoding="utf-8"))["trial_data"]
        staged = {json.loads(entry[0])["trial_id"] for entry in entries}
        written_to = driver_staging_folder("", entries[0][0])[1] if entries else ""
    except Exception:  # noqa: BLE001 - a cut or foreign file: not this run's
        return False
    return bool(written_to) and ours <= staged and os.path.realpath(written_to) == os.path.realpath(folder)


def _recover_trial_folder(staged: Path, stored: Path) -> bool:
    """Copy what `staged` adds to `stored` (see recover_staged_trial_files); whether anything was."""
    if stored.is_symlink():
        return False  # a trial folder linked elsewhere: never written through (resume refuses it)
    copied = False
    for name in GROWING_FILES + WRITTEN_ONCE:
        source, target = staged / name, stored / name
        if not source.is_file() or source.is_symlink() or target.is_symlink():
            continue
        data = source.read_bytes()
        if target.exists():
            old = target.read_bytes()
            if name not in GROWING_FILES or len(data) <= len(old) or not data.startswith(old):
                continue
        atomic_write_bytes(target, lambda handle, data=data: handle.write(data))
        copied = True
    return copied
