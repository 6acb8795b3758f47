"""Ray's own state files in an experiment folder, checked before `tunelab resume` hands them to Ray.

Ray writes its experiment snapshot in a staging folder and copies it into the storage with plain
writes, so a driver killed mid-copy (SIGKILL, the OOM killer, a lost node) can leave a file cut
short. Ray's restore then fails on it, logs "Restarting experiment" and carries on with a
half-restored search in the same folder, which hung in our tests instead of failing. So every
state file `Tuner.restore` reads is checked here first:

- the searcher's snapshot (`searcher-state-*.pkl`, the Optuna study and which Ray trial is which
  Optuna trial) cut short is rebuilt from the ground truth: the trials of Ray's experiment state
  and the results each trial wrote (or, with `--optuna-storage`, the stored study itself);
- a file of the newest snapshot cut short (the experiment state, the search generator's counter,
  the searcher's) is put back from the whole copy tunelab keeps of each snapshot before Ray copies
  it (tunelab.whole_snapshot; local and shared-folder storage);
- any other file cut short (tuner.pkl, or a snapshot without a whole copy) cannot be rebuilt
  faithfully: resume stops with one line saying so and changes nothing.

A searcher snapshot found unreadable is kept beside as `NAME.unreadable`, never deleted.
"""
from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import pickle
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tunelab.core.storage import local_path
from tunelab.core.errors import ConfigError
from tunelab.core.files import atomic_write_bytes
from tunelab.trainables.fileio import read_json_lines

SEARCHER_STATE = "searcher-state-*.pkl"
# Read by Tuner.restore with no way to rebuild them here: tuner.pkl, the experiment state (the
# trials), the search generator's (sample counter) and the random generator's.
OTHER_STATE = ("tuner.pkl", "experiment_state-*.json", "search_gen_state-*.json", "basic-variant-state-*.json")
# The files of one snapshot, by Ray's session string, and tunelab's whole copy of them
# (tunelab.whole_snapshot).
STATE_FILES = ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl",
               "basic-variant-state-{}.json")
SNAPSHOT_FILE = ".tunelab-ray-snapshot.tar"
MAX_SNAPSHOT_BYTES = 2 << 30  # a bundle member larger than this is not one tunelab wrote


@dataclass
class RayTrial:
    """One trial as Ray's experiment state and its own result file left it."""
    trial_id: str
    status: str
    config: dict[str, Any]
    results: list[dict[str, Any]]
    dirname: str

    @property
    def last_result(self) -> dict[str, Any]:
        return self.results[-1] if self.results else {}


def newest(folder: Path, pattern: str) -> Path | None:
    """The file Ray reads for `pattern`: it takes the greatest name (names hold the session's time)."""
    found = sorted(glob.glob(str(folder / pattern)))
    return Path(found[-1]) if found else None


def has_experiment_state(location: str) -> bool:
    """Whether Ray wrote its first experiment snapshot (experiment_state-*.json) at `location`.

    Ray writes tuner.pkl when the search starts and its first snapshot only after it, so a driver
    killed in between leaves a folder `Tuner.can_restore` accepts that Ray's restore cannot read.
    """
    local = local_path(location)
    if local is not None:
        return newest(local, "experiment_state-*.json") is not None
    import pyarrow.fs as pafs

    from tunelab.core.storage import remote_filesystem

    filesystem, root = remote_filesystem(location)
    files = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return any(Path(info.path).name.startswith("experiment_state-") and info.path.endswith(".json")
               for info in files)


def read_error(file: Path) -> str | None:
    """None if Ray can load `file`, else the error in one short line."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return load_error(file.name, data)


def load_error(name: str, data: bytes) -> str | None:
    """None if Ray can load the contents `data` of its state file `name`, else the error in one line."""
    import ray.cloudpickle as cloudpickle

    try:
        if name.endswith(".json") and name.startswith("experiment_state"):
            json.loads(data)  # Ray's experiment state is JSON; the others are pickles named .json
        else:
            cloudpickle.loads(data)
        return None
    except Exception as exc:  # noqa: BLE001 - a cut-short file raises whatever its cut makes it raise
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def set_aside(file: Path) -> Path:
    """Move `file` to NAME.unreadable (NAME.unreadable.1, ... if an earlier try left one)."""
    kept = _aside_name(file)
    os.replace(file, kept)
    return kept


def copy_aside(file: Path) -> Path:
    """Copy `file` to NAME.unreadable (or .1, ...), leaving it in place until it is replaced whole."""
    import shutil

    kept = _aside_name(file)
    shutil.copyfile(file, kept)
    return kept


def _aside_name(file: Path) -> Path:
    kept = file.with_name(file.name + ".unreadable")
    n = 0
    while kept.exists():
        n += 1
        kept = file.with_name(f"{file.name}.unreadable.{n}")
    return kept


def kept_files(folder: Path, session: str) -> dict[str, bytes] | None:
    """The bundle's files if it holds a whole snapshot of `session` (each file loads), else None."""
    bundle = folder / SNAPSHOT_FILE
    if bundle.is_symlink() or not bundle.is_file():
        return None
    wanted = {name.format(session) for name in STATE_FILES}
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            for member in tar.getmembers():
                if member.name not in wanted or not member.isfile() or member.size > MAX_SNAPSHOT_BYTES:
                    return None  # not a bundle KeepWholeSnapshot wrote for this session
                files[member.name] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError, EOFError):
        return None
    if STATE_FILES[0].format(session) not in files:
        return None
    if any(load_error(name, data) is not None for name, data in files.items()):
        return None
    return files


def put_back_whole_snapshot(folder: Path, cut_file: Path) -> bool:
    """Put back the whole copy tunelab kept of Ray's newest snapshot (tunelab.whole_snapshot) when
    `cut_file`, found unreadable, is one of its files; True if it did, False (nothing changed) when
    there is no such copy. Every file of the copy is written back whole, so the snapshot is one
    moment's again; the ones that did not load are copied aside first (NAME.unreadable)."""
    state = newest(folder, "experiment_state-*.json")
    files = kept_files(folder, session_of(state)) if state is not None else None
    if files is None or cut_file.name not in files:
        return False
    cut = [name for name in files if (folder / name).exists() and read_error(folder / name) is not None]
    try:
        kept = [f"{name} (kept as {copy_aside(folder / name).name})" for name in cut]
        for name, data in files.items():
            atomic_write_bytes(folder / name, lambda handle, data=data: handle.write(data))
    except OSError as exc:  # a read-only or full storage: say so in one line, as for any cut file
        raise ConfigError(f"{folder}: Ray's {', '.join(cut)} is unreadable (cut short when the driver was killed) "
                          f"and tunelab's whole copy of it could not be put back ({type(exc).__name__}: {exc}); "
                          "make the folder writable and run `tunelab resume` again") from None
    # copied aside, then replaced whole: a failure part way leaves every file where resume looks for it
    were = "was" if len(kept) == 1 else "were"
    print(f"tunelab: Ray's {', '.join(kept)} {were} cut short when the driver was killed; put back the whole "
          "snapshot tunelab kept of the same moment", file=sys.stderr)
    return True


def check_and_repair(path: str, searcher: Any) -> None:
    """Make a local experiment's Ray state restorable, or stop with one line (ConfigError, exit 2)."""
    folder = local_path(path)
    if folder is None:
        return  # remote storage: Ray's own restore semantics
    for pattern in OTHER_STATE:
        file = newest(folder, pattern)
        error = read_error(file) if file is not None else None
        if error is not None and not put_back_whole_snapshot(folder, file):
            raise ConfigError(f"{path}: Ray's {file.name} is unreadable ({error}; a driver killed mid-write cuts it "
                              "short), so Ray cannot continue this search; nothing was changed. Every trial's "
                              "results are intact: `tunelab report` and `tunelab best` read them; start a new search "
                              "with `tunelab tune`")
    generator_file = newest(folder, "search_gen_state-*.json")
    searcher_file = newest(folder, SEARCHER_STATE)
    if generator_file is None or (searcher_file is not None and read_error(searcher_file) is None):
        return
    if searcher_file is not None and put_back_whole_snapshot(folder, searcher_file):
        return
    # Ray restores the searcher from the generator's session; a missing snapshot (set aside by an
    # earlier try) is rebuilt like a cut-short one.
    session = session_of(generator_file)
    lost = searcher_file.name if searcher_file is not None else f"searcher-state-{session}.pkl"
    search_alg = tuner_search_alg(folder)
    trials = ray_trials(folder)
    if not searcher.rebuild(search_alg, trials):
        raise ConfigError(f"{path}: Ray's {lost} is unreadable or missing and --search {searcher.name} cannot "
                          "rebuild it from the trials; start a new search with `tunelab tune`")
    kept = f" (kept as {set_aside(searcher_file).name})" if searcher_file is not None else ""
    search_alg.save_to_dir(str(folder), session_str=session)
    print(f"tunelab: the searcher's snapshot {lost} was cut short or lost when the driver was killed{kept}; "
          f"rebuilt it from the {len(trials)} trial(s) on disk", file=sys.stderr)


def session_of(file: Path) -> str:
    """The session part of a Ray state file's name (`searcher-state-SESSION.pkl`, ...)."""
    stem = file.name.rsplit(".", 1)[0]
    for prefix in ("searcher-state-", "search_gen_state-", "basic-variant-state-", "experiment_state-"):
        if stem.startswith(prefix):
            return stem[len(prefix):]
    raise ValueError(f"not a Ray state file: {file.name}")


def tuner_search_alg(folder: Path):
    """The searcher as the experiment started it (what Tuner.restore unpickles from tuner.pkl)."""
    with open(folder / "tuner.pkl", "rb") as handle:
        return pickle.load(handle)["_tune_config"].search_alg


def ray_trials(folder: Path) -> list[RayTrial]:
    """Every trial in Ray's newest experiment state, in creation order, with the results it wrote."""
    with open(newest(folder, "experiment_state-*.json")) as handle:
        state = json.load(handle)
    trials = []
    for trial_json, _metadata in state["trial_data"]:
        trial = json.loads(trial_json)  # plain JSON: configs are; Ray's pickled fields are not read
        dirname = trial.get("relative_logdir") or ""
        trials.append(RayTrial(trial_id=trial["trial_id"], status=trial["status"], config=trial["config"],
                               results=read_results(folder / dirname / "result.json") if dirname else [],
                               dirname=dirname))
    return trials


_results_read: dict[tuple[str, int, int], list[dict[str, Any]]] | None = None


@contextlib.contextmanager
def results_read_once() -> Iterator[None]:
    """While resume's repairs run, each trial's result.json is read once, not once per repair step
    (three of them read every trial: 18 s at 5,000 trials). A file is known by its size and mtime,
    so one a step rewrote or copied in is read again."""
    global _results_read
    _results_read = {}
    try:
        yield
    finally:
        _results_read = None


def read_results(file: Path) -> list[dict[str, Any]]:
    """A trial's result.json (one JSON object a line); a last line cut short by the kill is skipped."""
    if _results_read is None:
        return read_json_lines(file)
    try:
        stat = os.stat(file)
    except OSError:
        return read_json_lines(file)
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    if key not in _results_read:
        _results_read[key] = read_json_lines(file)
    return list(_results_read[key])


def reported_value(result: dict[str, Any], metric: str, time_attr: str) -> tuple[int, float] | None:
    """(step, value) of one result row, or None unless both are finite numbers: the one rule for which
    reported values the searcher records, live (`on_trial_result`) and when rebuilt from result.json."""
    value, step = result.get(metric), result.get(time_attr)
    if not (isinstance(value, (int, float)) and isinstance(step, (int, float))):
        return None
    if not (math.isfinite(value) and math.isfinite(step)):
        return None
    return int(step), float(value)


def metric_by_step(results: list[dict[str, Any]], metric: str, time_attr: str) -> dict[int, float]:
    """The values the searcher recorded live from these rows: the first usable one per step."""
    values: dict[int, float] = {}
    for row in results:
        reported = reported_value(row, metric, time_attr)
        if reported is not None:
            values.setdefault(*reported)
    return values


def drop_lost_checkpoints(folder: Path, trial_ids: set[str]) -> dict[str, int]:
    """Forget, in Ray's newest experiment state, the checkpoints of `trial_ids` no longer on disk.

    Each trial's snapshot lists the checkpoints it keeps (the best `num_to_keep` and the latest). A
    snapshot that lags a killed driver can list ones the trial had already deleted in favour of newer
    ones; Ray, evicting one of them later, fails on the missing folder and logs "Error handling
    checkpoint ... FileNotFoundError" (and skips that step's bookkeeping). Run after the latest
    checkpoint was put back in place (`repair_latest_checkpoints`): the latest is never dropped.
    Returns {trial_id: checkpoints dropped}; the state file is rewritten atomically only if any were.
    """
    from tunelab.compat.ray import drop_checkpoints
    from tunelab.trainables.fileio import atomic_write_text

    file = newest(folder, "experiment_state-*.json")
    if file is None:
        return {}
    state = json.loads(file.read_text())
    dropped: dict[str, int] = {}
    for entry in state["trial_data"]:
        trial_id = json.loads(entry[0])["trial_id"]
        if trial_id not in trial_ids:
            continue  # a trial that will not run again keeps its bookkeeping as it is
        entry[1], count = drop_checkpoints(entry[1], lambda path: lost_checkpoint(Path(path), folder))
        if count:
            dropped[trial_id] = count
    if dropped:
        atomic_write_text(file, json.dumps(state, indent=2))
    return dropped


def lost_checkpoint(path: Path, folder: Path) -> bool:
    """A checkpoint inside this (local) experiment that is not on disk; anything elsewhere is not ours to judge."""
    return path.parent.parent == folder and not path.exists()
