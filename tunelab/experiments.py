"""Where an experiment lives, and the rules that keep other people's files safe.

- An experiment name is one plain path component: `--name ..`, `--name .` or `--name a/b` could
  otherwise point `--overwrite`'s delete at the storage itself or outside it.
- `--overwrite` replaces only a folder that is a tunelab experiment: its `tunelab.json` is a
  tunelab record (read and schema-checked by tunelab.core.record.read_record), directly inside the
  storage. Even then it deletes only what tunelab and Ray Tune wrote there (tunelab.experiment_files,
  and what each tracker declares it writes inside, such as W&B's offline runs); anything else
  stays, and so does the folder when something is left. These are the only deletes in tunelab:
  here, and on object storage in tunelab.remote_experiments. Symlinks are never followed, and only the ones
  W&B itself makes are removed.
- One writer per experiment: the lock (`tunelab.experiment_lock`).
- `resume` continues every unfinished trial from its newest checkpoint on disk, also when Ray's
  last snapshot names an older one already replaced (`repair_latest_checkpoints`).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tunelab.core.record import TUNELAB_FILE
from tunelab.experiment_files import OURS, TRIAL_FILES, TRIAL_FOLDERS, already_exists, matches
from tunelab.experiment_files import replaceable_record
from tunelab.core.storage import is_uri, join_uri, local_path
from tunelab.core.statuses import UNFINISHED_RAY_STATUSES, RayStatus
from tunelab.core.trial_folders import parse_trial_folder_name, trial_folder_pattern
from tunelab.ray_state import drop_lost_checkpoints, lost_checkpoint, newest
from tunelab import tracker_plugins as trackers
from tunelab.experiment_lock import lock_path
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import refuse_link

NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,127}")
# Schemes pyarrow's filesystems resolve, i.e. what Ray's `storage_path` accepts.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "mock")
BUCKET_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")  # the first part of the location is a bucket (container)



def check_name(name: str) -> str:
    if not NAME_RULE.fullmatch(name or "") or name in (".", ".."):
        raise ConfigError(f"--name {name!r} is not a valid experiment name; allowed: one plain folder name of "
                          "letters, digits and . _ + = @ - (starting with a letter or digit, at most 128), "
                          "no '/', no '..'")
    return name


def normalise_storage(storage: str) -> str:
    """An absolute local path, or a URI whose scheme pyarrow knows; anything else is bad input."""
    if not storage or not storage.strip():
        raise ConfigError("--storage '' is empty; give a folder (default ./runs) or a URI such as s3://bucket/runs")
    if any(ord(c) < 32 for c in storage):
        raise ConfigError(f"--storage {storage!r} holds a control character; give a plain folder or URI")
    if not is_uri(storage):
        prefix = storage.split(":", 1)[0].lower()
        if ":" in storage and prefix in STORAGE_SCHEMES:
            raise ConfigError(f"--storage {storage!r} is a URI without '//'; write {prefix}:// and the location "
                              "(file:///absolute/path, s3://bucket/runs), or a plain path")
        return str(Path(os.path.expanduser(storage)).resolve())
    scheme, rest = storage.split("://", 1)
    scheme = scheme.lower()
    if scheme not in STORAGE_SCHEMES:
        raise ConfigError(f"--storage {storage!r}: scheme {scheme!r} is not one Ray's storage (pyarrow) knows; "
                          f"choose from: {', '.join(STORAGE_SCHEMES)}, or a plain path")
    storage = f"{scheme}://{rest}"  # File:///x is file:///x to every check below, as to pyarrow
    if scheme in BUCKET_SCHEMES and not rest.split("?", 1)[0].split("/", 1)[0].rsplit("@", 1)[-1]:
        raise ConfigError(f"--storage {storage!r} names no bucket; write {scheme}://BUCKET/FOLDER")
    local = local_path(storage)
    if local is not None and not local.is_absolute():
        raise ConfigError(f"--storage {storage!r}: a file:// URI needs an absolute path, e.g. file:///mnt/shared/runs")
    if local is not None:
        return "file://" + str(local.resolve())
    if "?" in storage:
        # the query form (s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http): pyarrow parses it
        # offline, so an option it does not know is refused here rather than in a traceback later
        from tunelab.core.storage import remote_filesystem

        remote_filesystem(storage, "--storage")
    return join_uri(storage)


def check_storage_writable(storage: str) -> None:
    """A local storage must be (or become) a writable folder; checked without writing anything."""
    local = local_path(storage)
    if local is None:
        return
    existing = local
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--storage {str(local)!r} is not writable: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--storage {str(local)!r} is not writable: no write permission on {str(existing)!r}")


def experiment_path(storage: str, name: str) -> str:
    if is_uri(storage):
        return join_uri(storage, name)  # a query (?endpoint_override=...) stays at the end
    return str(Path(storage) / name)


# ----------------------------------------------------------------------------- creating and replacing

def check_free(path: str, overwrite: bool) -> None:
    """Refuse an existing experiment (or, under --overwrite, an existing folder that is not one), and
    a symlink planted where the lock goes. Writes nothing: run once before anything loads or starts,
    and again under the lock."""
    local = local_path(path)
    if local is None:
        from tunelab import remote_experiments

        remote_experiments.check_free(path, overwrite)
        return
    refuse_link(lock_path(path), "lock file")
    if not (local.exists() or local.is_symlink()):
        return
    if local.is_symlink() or not local.is_dir():
        raise ConfigError(f"experiment {str(local)!r} exists and is not a folder; pick another --name")
    if not any(local.iterdir()):
        return
    if not overwrite:
        raise already_exists(str(local))
    owner_record(local)


def owner_record(folder: Path) -> dict[str, Any]:
    """The tunelab record that makes `folder` ours to replace (a plain file, not a symlink)."""
    record_file = folder / TUNELAB_FILE
    return replaceable_record(folder, str(folder), record_file.is_file() and not record_file.is_symlink())


def prepare_folder(path: str, overwrite: bool) -> None:
    """Create the experiment folder, replacing an experiment under --overwrite (see check_free).
    Remote storage is created by Ray itself."""
    check_free(path, overwrite)
    local = local_path(path)
    if local is None:
        from tunelab import remote_experiments

        if overwrite:
            remote_experiments.remove_experiment(path)
        return
    if local.exists() and any(local.iterdir()):
        remove_experiment(local)
    try:
        local.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=local):  # O_EXCL under a fresh name: nothing planted is followed
            pass
    except OSError as exc:
        raise ConfigError(f"--storage {str(local.parent)!r} is not writable: {exc.strerror}") from None


def remove_experiment(folder: Path) -> None:
    """`--overwrite`: delete what tunelab and Ray wrote in `folder`, a tunelab experiment (see OURS);
    what is left is named on stderr, and the folder stays when anything is."""
    method = owner_record(folder)["method"]
    trial_folder = trial_folder_pattern(method)
    tracker_folders = trackers.folders_in_experiment()
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            continue
        if entry.is_dir() and trial_folder.fullmatch(entry.name):
            _remove_matching(entry, TRIAL_FILES, folders=TRIAL_FOLDERS)
        elif entry.is_dir() and entry.name in tracker_folders:  # e.g. EXPERIMENT/wandb/, offline W&B runs
            _remove_matching(entry, tracker_folders[entry.name], links=True)
        elif entry.is_file() and matches(entry.name, OURS):
            entry.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
        return
    kept = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_symlink() or not p.is_dir() or not any(p.iterdir()))
    shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    print(f"tunelab: --overwrite: kept {len(kept)} item(s) that tunelab did not write in {folder}: {shown}",
          file=sys.stderr)


def _remove_matching(folder: Path, patterns: tuple[str, ...], links: bool = False,
                     folders: tuple[str, ...] | None = None) -> None:
    """Delete the entries of `folder` named by `patterns` (folders whole, never following a link),
    then `folder` itself if that left it empty. With `folders`, a folder must match those instead:
    `patterns` then name files only."""
    for entry in folder.iterdir():
        is_folder = entry.is_dir() and not entry.is_symlink()
        named_by = folders if folders is not None and is_folder else patterns
        if not matches(entry.name, named_by) or (entry.is_symlink() and not links):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)  # rmtree unlinks the links inside a folder; it never follows them
        else:
            entry.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


# ----------------------------------------------------------------------------- resuming

def _checkpoint_index(folder: Path) -> int:
    try:
        return int(folder.name.rsplit("_", 1)[-1])
    except ValueError:
        return -1


def refuse_linked_trial_folders(path: str, method: str) -> None:
    """Refuse, before resume starts anything, a trial folder of the experiment that is a symlink:
    Ray would write the trial's checkpoints and results through it, into a folder not ours."""
    local = local_path(path)
    if local is None:
        return
    for entry in sorted(local.iterdir()):
        if entry.is_symlink() and parse_trial_folder_name(entry.name, method) is not None:
            refuse_link(entry, "trial folder")


def repair_latest_checkpoints(path: str, resume_errored: bool) -> None:
    """Let every unfinished trial continue from its newest checkpoint on disk.

    Ray's experiment snapshot, written every few seconds and synced in the background, can lag the
    trials: when the driver is killed, a running trial's latest checkpoint in the snapshot may
    already have been deleted (only the best `num_to_keep` are kept) in favour of newer ones, and
    Ray's restore then fails the trial ("checkpoint does not exist on storage anymore"). The
    newest checkpoint of that trial on disk is moved to the path the snapshot names, so the trial
    continues from it: it repeats no epoch that checkpoint holds. Checkpoints the snapshot still lists
    but the trial had deleted are then forgotten (`drop_lost_checkpoints`).
    """
    local = local_path(path)
    if local is None:
        return  # remote storage: Ray's own restore semantics
    from tunelab.compat.ray import trials_of_state

    resumable = {*UNFINISHED_RAY_STATUSES, *((RayStatus.ERROR,) if resume_errored else ())}
    trials = trials_of_state(newest(local, "experiment_state-*.json"), local, {str(s) for s in resumable})
    for trial in trials:
        checkpoint = trial.checkpoint
        if checkpoint is None:
            continue
        wanted = Path(checkpoint.path)
        if not lost_checkpoint(wanted, local):
            continue
        newer = sorted((p for p in wanted.parent.glob("checkpoint_*")
                        if p.is_dir() and _checkpoint_index(p) > _checkpoint_index(wanted)), key=_checkpoint_index)
        if newer:
            newer[-1].rename(wanted)
            print(f"tunelab: trial {trial.trial_id} continues from its newest checkpoint ({newer[-1].name}); "
                  f"Ray's last snapshot named {wanted.name}, already replaced", file=sys.stderr)
    for trial_id, count in drop_lost_checkpoints(local, {t.trial_id for t in trials}).items():
        print(f"tunelab: trial {trial_id}: forgot {count} checkpoint(s) Ray's last snapshot still listed but the "
              "trial had already replaced", file=sys.stderr)
