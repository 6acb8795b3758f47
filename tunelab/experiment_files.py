"""What tunelab and Ray Tune write in an experiment, as name patterns: what `--overwrite` may
delete there (tunelab.experiments on a disk, tunelab.remote_experiments on object storage), and
nothing else."""
from __future__ import annotations

import fnmatch
import shlex
from pathlib import Path
from typing import Any

from tunelab.core.errors import ConfigError
from tunelab.core.record import TUNELAB_FILE, read_record
from tunelab.ray_state import SNAPSHOT_FILE

# What `--overwrite` may delete in an experiment folder, as name patterns (fnmatch), and nothing
# else. At the top: the record, Ray Tune's experiment files (and the `.unreadable` copies
# ray_state.set_aside keeps of cut-short ones), tunelab's whole copy of Ray's snapshot (and the
# temporary file a kill mid-write leaves of it), TensorBoard files, and trial folders, named
# METHOD_TRIALID (tunelab.core.trial_folders).
OURS = (TUNELAB_FILE, "tuner.pkl", "trainable.pkl", ".validate_storage_marker", "experiment_state-*.json",
        "search_gen_state-*.json", "searcher-state-*.pkl", "basic-variant-state-*.json", "*.unreadable",
        "*.unreadable.[0-9]*", "events.out.tfevents.*", SNAPSHOT_FILE, f".{SNAPSHOT_FILE}.*")
# Inside a trial folder: Ray's per-trial files (files only: a folder of that name is not Ray's)
# and the checkpoint folders tunelab's trainables report (removed whole).
TRIAL_FILES = ("params.json", "params.pkl", "result.json", "progress.csv", "error.txt", "error.pkl",
               "events.out.tfevents.*")
TRIAL_FOLDERS = ("checkpoint_[0-9]*",)


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def already_exists(shown: str) -> ConfigError:
    """The refusal of a new search where an experiment is (`shown`: its location as it may be
    printed); the resume command is quoted for a shell (a URI's '&', a space)."""
    return ConfigError(f"experiment {shown!r} already exists; continue it with `tunelab resume {shlex.quote(shown)}`, "
                       "pick another --name, or pass --overwrite to replace it")


def replaceable_record(location: str | Path, shown: str, has_record: bool) -> dict[str, Any]:
    """The tunelab record that makes the experiment at `location` ours to replace (`has_record`:
    a plain `tunelab.json` is there); anything else is refused in one line naming `shown`."""
    if not has_record:
        raise ConfigError(f"--overwrite refused: {shown!r} is not a tunelab experiment (no {TUNELAB_FILE}); "
                          "it is left as it is, pick another --name")
    try:
        return read_record(location)
    except ConfigError as exc:
        raise ConfigError(f"--overwrite refused: {shown!r} is not a tunelab experiment: {exc}; it is left "
                          "as it is, pick another --name") from None
