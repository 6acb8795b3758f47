"""An experiment on object storage (s3://, gs://, ...): whether its location is free, and what
`--overwrite` may delete there. The same rules as a folder on disk (tunelab.experiments): an
existing experiment is refused unless --overwrite, only a tunelab experiment is replaced, and
only what tunelab and Ray Tune wrote there is deleted. Object stores hold no symlinks; a "folder"
is the common prefix of its objects.
"""
from __future__ import annotations

import sys

from tunelab.core.errors import ConfigError
from tunelab.core.record import TUNELAB_FILE
from tunelab.core.redaction import redact
from tunelab.core.storage import remote_filesystem
from tunelab.core.trial_folders import trial_folder_pattern
from tunelab.experiment_files import OURS, TRIAL_FILES, TRIAL_FOLDERS, already_exists, matches, replaceable_record


def stored_files(location: str) -> tuple[object, str, list[str]]:
    """(filesystem, root inside it, every file under the experiment's prefix, relative to it)."""
    import pyarrow.fs as pafs

    fs, root = remote_filesystem(location)
    root = root.rstrip("/")
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True, recursive=True))
    except OSError as exc:
        raise ConfigError(f"the storage of {redact(location)!r} cannot be reached (listing the experiment: "
                          f"{redact(str(exc).splitlines()[0])}); check its endpoint and credentials") from None
    return fs, root, sorted(i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File)


def check_free(location: str, overwrite: bool) -> None:
    """Refuse an experiment location that holds objects, or under --overwrite one that is not a
    tunelab experiment. Writes nothing."""
    _, _, files = stored_files(location)
    if not files:
        return
    if not overwrite:
        raise already_exists(redact(location))  # a password shown as *** is the user's to put back
    replaceable_record(location, redact(location), TUNELAB_FILE in files)


def ours(relative: str, method: str) -> bool:
    """Whether the object at `relative` (inside the experiment) is one tunelab or Ray Tune wrote:
    a top-level file named in OURS, a trial folder's file named in TRIAL_FILES, or anything in a
    trial folder's checkpoint folder (TRIAL_FOLDERS)."""
    parts = relative.split("/")
    if len(parts) == 1:
        return matches(parts[0], OURS)
    if not trial_folder_pattern(method).fullmatch(parts[0]):
        return False
    return matches(parts[1], TRIAL_FILES) if len(parts) == 2 else matches(parts[1], TRIAL_FOLDERS)


def remove_experiment(location: str) -> None:
    """`--overwrite` on object storage: delete the objects tunelab and Ray wrote (see `ours`); what is
    left is named on stderr."""
    fs, root, files = stored_files(location)
    method = replaceable_record(location, redact(location), TUNELAB_FILE in files)["method"]
    kept = [f for f in files if not ours(f, method)]
    for relative in files:
        if ours(relative, method):
            fs.delete_file(f"{root}/{relative}")
    if kept:
        shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
        print(f"tunelab: --overwrite: kept {len(kept)} item(s) that tunelab did not write in {redact(location)}: "
              f"{shown}", file=sys.stderr)
