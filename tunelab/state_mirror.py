"""Ray's state of an experiment on object storage, as a local folder for the steps before `resume`.

The checks and repairs `resume` makes before Ray restores a search (tunelab.ray_state,
tunelab.late_trials) read and rewrite Ray's state files and read each trial's results. They work
on a folder. On object storage, `local_state` downloads what they read into a temporary mirror:
the experiment's top-level files (Ray's snapshots, tuner.pkl, tunelab.json), each trial folder's
params.json and result.json, and its checkpoint folders as empty folders (the steps only ask
whether one exists). When the steps end without error, every file they changed or added is
uploaded back: the searcher's snapshot first, then the search generator's state, then the
experiment state, the order the steps rely on (a kill in between leaves what the next resume
repairs again). Nothing in the store is deleted.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

from tunelab.core.storage import local_path, remote_filesystem

TRIAL_FILES = ("params.json", "result.json")


@contextlib.contextmanager
def local_state(path: str) -> Iterator[str]:
    """The experiment at `path` as a local folder: the folder itself on a disk, else a mirror
    uploaded back (what changed) when the block ends without error."""
    if local_path(path) is not None:
        yield path
        return
    filesystem, root = remote_filesystem(path)
    root = root.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="tunelab-state-") as scratch:
        mirror = Path(scratch) / root.rsplit("/", 1)[-1]
        before = download(filesystem, root, mirror)
        yield str(mirror)
        upload_changes(filesystem, root, mirror, before)


def download(filesystem, root: str, mirror: Path) -> dict[str, bytes]:
    """Copy what the steps read into `mirror`; returns each file's bytes by its path under it."""
    import pyarrow.fs as pafs

    copied: dict[str, bytes] = {}
    mirror.mkdir(parents=True)
    for info in filesystem.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = info.path[len(root) + 1:]
        parts = relative.split("/")
        if info.type == pafs.FileType.Directory and len(parts) == 2 and parts[1].startswith("checkpoint_"):
            (mirror / relative).mkdir(parents=True, exist_ok=True)
            continue
        wanted = len(parts) == 1 or (len(parts) == 2 and parts[1] in TRIAL_FILES)
        if info.type != pafs.FileType.File or not wanted:
            continue
        with filesystem.open_input_stream(info.path) as handle:
            data = handle.read()
        (mirror / relative).parent.mkdir(parents=True, exist_ok=True)
        (mirror / relative).write_bytes(data)
        copied[relative] = data
    return copied


def _upload_order(relative: str) -> int:
    name = relative.rsplit("/", 1)[-1]
    if name.startswith("searcher-state-"):
        return 0
    if name.startswith(("search_gen_state-", "basic-variant-state-")):
        return 1
    if name.startswith("experiment_state-"):
        return 3
    return 2


def upload_changes(filesystem, root: str, mirror: Path, before: dict[str, bytes]) -> list[str]:
    """Upload the files of `mirror` that differ from `before` (or are new), in the order the steps
    rely on; returns their paths under the experiment."""
    changed = []
    for file in mirror.rglob("*"):
        if not file.is_file():
            continue
        relative = file.relative_to(mirror).as_posix()
        if before.get(relative) != file.read_bytes():
            changed.append(relative)
    for relative in sorted(changed, key=lambda r: (_upload_order(r), r)):
        with filesystem.open_output_stream(f"{root}/{relative}") as handle:
            handle.write((mirror / relative).read_bytes())
    return changed
