"""Experiment folders -> tidy DataFrames. Reading never writes into an experiment folder.

`load_experiments(paths)` gives one row per (trial, epoch) with `experiment`, `method`,
`dataset`, `trial_id`, `status`, flattened `config/...` columns and every reported metric.
`trial_summary(frame)` gives one row per trial at its *best* epoch by the optimised metric.
"""
from __future__ import annotations

import atexit
import functools
import glob
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from tunelab.core.record import FINAL_STATUSES, TUNELAB_FILE, read_record
from tunelab.core.storage import experiment_identity, remote_filesystem
from tunelab.core.redaction import redact
from tunelab.core.storage import local_path as _local_or_none
from tunelab.core import metrics as M
from tunelab.core.errors import ConfigError
from tunelab.core.statuses import status_from
from tunelab.core.trial_folders import parse_trial_folder_name
from tunelab.analysis.progress import Progress, TrialFileError, progress_frame, read_progress_rows

__all__ = ["FINAL_STATUSES", "TUNELAB_FILE", "read_record", "local_path", "load_experiment", "load_experiments",
           "trial_summary", "status_from", "unique_experiments"]
CONFIG_PREFIX = "config/"


def warn(message: str) -> None:
    print(f"tunelab: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


# The files analysis reads; a remote experiment is fetched without its checkpoints.
TRIAL_FILES = ("progress.csv", "params.json", "error.txt")


def experiment_id(location: str | Path) -> str:
    """How an experiment is named in tables: its real folder, or its normalised URI when remote; one
    name for every spelling of one experiment (`tunelab.core.storage.experiment_identity`)."""
    return experiment_identity(location)


def unique_experiments(locations: Iterable[str | Path]) -> list[str | Path]:
    """The experiments given, each once: two spellings of one experiment (`x`, `./x`, `x/`, a symlink,
    file://) would otherwise count its trials twice. The first spelling is kept; the others are named."""
    kept: dict[str, str | Path] = {}
    for location in locations:
        identity = experiment_id(location)
        if identity in kept:
            warn(f"{str(location)!r} is the experiment {str(kept[identity])!r} again ({identity}); counted once")
        kept.setdefault(identity, location)
    return list(kept.values())


def local_path(location: str | Path) -> Path:
    """A local folder with the experiment's files: the folder of a plain path or file:// URI, or for
    a URI of any filesystem pyarrow resolves (s3://, gs://, ...) a temporary copy of the files
    analysis reads (the record, Ray's snapshots, each trial's progress, params and error; never
    checkpoints), fetched once per process."""
    local = _local_or_none(location)
    if local is None:
        return _fetch(experiment_id(location))
    try:
        return local.resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop: pathlib raises RuntimeError for it
        raise ConfigError(f"{str(location)!r} is not a tunelab experiment ({exc})") from None


@functools.lru_cache(maxsize=None)
def _fetch(uri: str) -> Path:
    import pyarrow.fs as pafs

    read_record(uri)  # a URI that holds no tunelab experiment is refused before anything is copied
    fs, root = remote_filesystem(uri)
    target = Path(tempfile.mkdtemp(prefix="tunelab-remote-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        parts = info.path[len(root):].strip("/").split("/")
        if any(part in ("", ".", "..") for part in parts):
            continue  # an object key such as 'a/../x' must not be written outside the temporary folder
        top_level = len(parts) == 1 and (parts[0] == TUNELAB_FILE or parts[0].startswith("experiment_state-"))
        if info.type == pafs.FileType.File and (top_level or (len(parts) == 2 and parts[1] in TRIAL_FILES)):
            (target / "/".join(parts[:-1])).mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as source:
                (target / "/".join(parts)).write_bytes(source.read())
    return target


def ray_trial_statuses(path: Path) -> dict[str, str]:
    """trial_id -> Ray's status (TERMINATED, ERROR, RUNNING, PENDING, ...) from the newest snapshot."""
    snapshots = sorted(glob.glob(str(path / "experiment_state-*.json")))
    if not snapshots:
        return {}
    try:
        state = json.loads(Path(snapshots[-1]).read_text(encoding="utf-8"))
        out = {}
        for entry in state.get("trial_data", []):
            trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
            out[trial["trial_id"]] = trial.get("status", "")
        return out
    except (json.JSONDecodeError, KeyError, TypeError, IndexError):
        return {}  # an unreadable snapshot: fall back to what the files say


def trial_status(frame: pd.DataFrame, errored: bool, ray_status: str, max_epochs: int) -> str:
    """`status_from` applied to one trial's progress rows."""
    diverged = M.DIVERGED in frame and bool((frame[M.DIVERGED].fillna(0) > 0).any())
    last_epoch = 0 if frame.empty else int(frame[M.EPOCH].max())
    return status_from(last_epoch, diverged, errored, max_epochs, ray_status)


def _read_params(params_file: Path) -> dict[str, Any]:
    try:
        params = json.loads(params_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise TrialFileError(f"{params_file.name} is not valid JSON ({type(exc).__name__}; truncated?)") from None
    if not isinstance(params, dict):
        raise TrialFileError(f"{params_file.name} must hold a JSON object, got {type(params).__name__}")
    return params


def resolved_config(method: str, params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The trial's full config, typed as the trial saw it: Ray's params.json holds only the values
    tune passed (the search's and --set's, the latter as typed strings), not the defaults."""
    from tunelab.trainables import get_method
    from tunelab.trainables.config import build_config, to_dict

    try:
        return to_dict(build_config(get_method(method).config_class, params))
    except ConfigError as exc:
        warn(f"trial {folder.name}: params.json does not build a {method} config ({exc}); its values are shown as saved")
        return params


def load_experiment(path: str | Path) -> pd.DataFrame:
    """One experiment folder -> rows per (trial, epoch); trials that never reported get one empty row."""
    location, path = experiment_id(path), local_path(path)
    record = read_record(path)
    max_epochs = int(record["scheduler"]["max_t"])
    ray_status = ray_trial_statuses(path)
    final = record.get(FINAL_STATUSES)
    trials, progress, unsettled = [], {}, {}  # unsettled: trial_dir -> (errored, Ray's status)
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and (p / "params.json").exists()):
        try:
            rows, params = read_progress_rows(folder / "progress.csv"), _read_params(folder / "params.json")
        except TrialFileError as exc:
            warn(f"trial {folder.name} of {redact(location)!r} skipped: {exc}")
            continue
        parsed = parse_trial_folder_name(folder.name, record["method"])
        trial_id = rows.last("trial_id") or (parsed[1] if parsed else folder.name)
        if final is not None and trial_id not in final:
            # Not part of the search as it ended: a trial `resume --restart-errored` replaced with
            # a fresh one (Ray gives it a new id and folder), or one lost with a killed driver.
            continue
        status = final.get(trial_id) if final is not None else None
        if not status:
            unsettled[folder.name] = ((folder / "error.txt").exists(), ray_status.get(trial_id, ""))
        progress[folder.name] = rows
        # One row per trial of what is constant over its epochs, joined once below: set column by
        # column on every trial's frame, it took 80% of `report`'s time at 10,000 trials.
        config = {CONFIG_PREFIX + key: json.dumps(value) if isinstance(value, (list, dict)) else value
                  for key, value in resolved_config(record["method"], params, folder).items()}
        trials.append({"experiment": location, "method": record["method"], "dataset": record["dataset"],
                       "trial_id": trial_id, "trial_dir": folder.name, "status": status, **config})
    if not trials:
        return pd.DataFrame(columns=["experiment", "method", "dataset", "trial_id", "status", M.EPOCH])
    epochs = _epoch_frames(progress, location)
    table = pd.DataFrame(trials)
    table = table[table["trial_dir"].isin(set(epochs["trial_dir"]))]  # a trial whose rows failed is skipped
    if unsettled:
        found = _statuses(epochs, unsettled, max_epochs)
        table["status"] = [found.get(d, s) for d, s in zip(table["trial_dir"], table["status"])]
    out = table.merge(epochs, on="trial_dir", how="right", validate="one_to_many")
    front = ["experiment", "method", "dataset", "trial_id", "trial_dir", "status", M.EPOCH]
    reported = [c for c in epochs.columns if c not in front]
    return out[front + reported + [c for c in out.columns if c not in front and c not in reported]]


_NO_ROWS = object()  # a trial's own piece: it reported nothing


def _epoch_frames(progress: dict[str, Progress], location: str) -> pd.DataFrame:
    """Every trial's epochs in folder order (one frame per distinct header, read at once), the last
    row of a repeated epoch kept, each trial's rows in epoch order; a trial that never reported
    gets one row without an epoch. Columns come in the order a trial-by-trial concatenation gives."""
    pieces: dict[tuple, list[str]] = {}  # a header, or a trial without rows -> its trials, in first-seen order
    for name, rows in progress.items():
        pieces.setdefault(rows.header if rows.rows else (_NO_ROWS, name), []).append(name)
    frames = []
    for key, names in pieces.items():
        if key[0] is _NO_ROWS:
            frames.append(pd.DataFrame({M.EPOCH: [pd.NA], "trial_dir": names}))
            continue
        try:
            frames.append(progress_frame([progress[n] for n in names], names).drop(columns="trial_id", errors="ignore"))
        except TrialFileError:  # not expected (each file was checked): one at a time, so only a bad one is lost
            for name in names:
                try:
                    frames.append(progress_frame([progress[name]], [name]).drop(columns="trial_id", errors="ignore"))
                except TrialFileError as exc:
                    warn(f"trial {name} of {redact(location)!r} skipped: {exc}")
    if not frames:
        return pd.DataFrame({M.EPOCH: pd.Series(dtype=object), "trial_dir": pd.Series(dtype=object)})
    order = {name: k for k, name in enumerate(progress)}
    epochs = pd.concat(frames, ignore_index=True)
    position = epochs["trial_dir"].map(order)
    if M.EPOCH in epochs:
        # A trial resumed after its driver was killed may have redone epochs: keep the last row of each.
        repeated = epochs[M.EPOCH].notna() & epochs.duplicated(subset=["trial_dir", M.EPOCH], keep="last")
        epochs, position = epochs[~repeated], position[~repeated]
    keys = pd.DataFrame({"position": position, "number": pd.to_numeric(epochs.get(M.EPOCH), errors="coerce")})
    return epochs.loc[keys.sort_values(["position", "number"], kind="stable", na_position="last").index] \
        .reset_index(drop=True)


def _statuses(epochs: pd.DataFrame, unsettled: dict[str, tuple[bool, str]], max_epochs: int) -> dict[str, str]:
    """`trial_status` of each trial the record gives no final status (trial_dir -> (errored, Ray's
    status)), from its rows; a trial without rows has run no epoch."""
    rows = epochs[epochs["trial_dir"].isin(set(unsettled))]
    column = lambda name: pd.to_numeric(rows[name], errors="coerce") if name in rows else \
        pd.Series(float("nan"), index=rows.index)
    last = column(M.EPOCH).groupby(rows["trial_dir"]).max()
    diverged = (column(M.DIVERGED).fillna(0) > 0).groupby(rows["trial_dir"]).any()
    return {name: status_from(0 if pd.isna(last[name]) else int(last[name]), bool(diverged[name]),
                              unsettled[name][0], max_epochs, unsettled[name][1]) for name in last.index}


def load_experiments(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [load_experiment(p) for p in unique_experiments(paths)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def trial_summary(frame: pd.DataFrame, metric: str = M.VAL_ACC, mode: str = "max") -> pd.DataFrame:
    """One row per trial: its metrics at its *best* epoch by `metric` (not its last epoch),
    plus `best_epoch`, `epochs` (epochs run) and `compute_s` (training seconds)."""
    if frame.empty:
        return pd.DataFrame()
    keys = ["experiment", "trial_id"]
    # Whole-frame group operations, not a Python loop over trials (26 s of `report` at 10,000).
    chosen = frame.groupby(keys, sort=True).tail(1)  # a trial with no score: its last row
    best = pd.Series(index=chosen.set_index(keys).index, dtype="Int64")
    if metric in frame:
        scored = frame.dropna(subset=[metric])
        if not scored.empty:
            grouped = scored.groupby(keys, sort=True)[metric]
            picked = grouped.idxmax() if mode == "max" else grouped.idxmin()
            unscored = chosen.set_index(keys).index.difference(picked.index)
            last = pd.Series(chosen.index, index=chosen.set_index(keys).index).loc[unscored]
            rows = pd.concat([picked, last]).sort_index()
            chosen = frame.loc[rows.to_numpy()]
            best = pd.Series(frame.loc[picked.to_numpy(), M.EPOCH].astype("Int64").to_numpy(),
                             index=picked.index).reindex(rows.index)
    out = chosen.copy().reset_index(drop=True)
    by_trial = frame.groupby(keys, sort=True)
    epochs = by_trial[M.EPOCH].max()
    out["best_epoch"] = best.to_numpy()
    out["epochs"] = epochs.fillna(0).astype(int).to_numpy()
    out["compute_s"] = (by_trial[M.EPOCH_SECONDS].sum().astype(float).to_numpy() if M.EPOCH_SECONDS in frame
                        else float("nan"))
    return out.drop(columns=[M.EPOCH])
