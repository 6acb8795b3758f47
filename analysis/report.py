"""`tunelab report`: tables (CSV and Parquet), PNG plots (tunelab.analysis.plots) and a markdown report
(tunelab.analysis.report_markdown) for experiments.

Written only under OUT, never into an experiment folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.analysis.load import (experiment_id, load_experiments, local_path, read_record, trial_summary,
                                   unique_experiments)
from tunelab.analysis.plots import write_plots
from tunelab.core.record import enclosing_experiments
from tunelab.core.storage import is_uri
from tunelab.core.redaction import redact, split_password
from tunelab.analysis.replicates import by_replicate, comparison_table
from tunelab.analysis.report_markdown import markdown
from tunelab.analysis.importance import importance, importance_note, study_importance
from tunelab.core import metrics as M
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import atomic_write_bytes, atomic_write_text, check_output_path


def check_out_dir(out: Path, experiments: list[Path]) -> None:
    """A report folder is never an experiment or inside one (listed or not), never a file, and never
    a folder of other files: an existing non-empty folder must hold an earlier tunelab report."""
    out = check_output_path(out, "--out", "folder")
    resolved = out.resolve()
    inside = enclosing_experiments(resolved)
    inside += [e for e in experiments if resolved == e.resolve() or e.resolve() in resolved.parents]
    if inside:
        raise ConfigError(f"--out {str(out)!r} is inside experiment {str(inside[0])!r}; reports never write "
                          "into an experiment folder, choose a folder outside it")
    if resolved.is_dir() and any(resolved.iterdir()) and not (resolved / "report.md").is_file():
        raise ConfigError(f"--out {str(out)!r} already holds files that are not a tunelab report; choose an "
                          "empty or new folder (its files are kept as they are)")


def method_importance(trials: pd.DataFrame, records: list[dict[str, Any]], space) -> tuple[pd.DataFrame, str | None]:
    """From the stored Optuna study when one experiment with a study stands behind these trials,
    else from the experiment files; both score full-budget trials only."""
    if len(records) == 1 and records[0]["search"].get("optuna_storage"):
        # the record keeps no password: the database client's own mechanism (PGPASSWORD, .pgpass) gives it
        stored = study_importance(split_password(records[0]["search"]["optuna_storage"])[0], records[0]["name"])
        if stored is not None:
            return stored
    return importance(trials, space), importance_note(trials)


def search_settings(record: dict[str, Any]) -> str:
    """What makes two searches of one method comparable: searcher, scheduler and budget."""
    options = record["options"]
    return json.dumps([record["search"].get("algorithm"), record["scheduler"], options.get("num_samples"),
                       options.get("stop_at")], sort_keys=True, default=str)


def method_labels(records: dict[str, dict[str, Any]]) -> dict[str, str]:
    """experiment -> the `method` its rows carry in the tables: the method name, or `method [name]`
    when experiments of one method on one dataset were searched with different settings (their
    results are not pooled into one row)."""
    settings: dict[tuple[str, str], set[str]] = {}
    for record in records.values():
        settings.setdefault((record["method"], record["dataset"]), set()).add(search_settings(record))
    return {experiment: record["method"] if len(settings[(record["method"], record["dataset"])]) == 1
            else f"{record['method']} [{record['name']}]" for experiment, record in records.items()}


def _write_frame(frame: pd.DataFrame, path: Path, parquet: bool = False) -> None:
    atomic_write_text(path, frame.to_csv(index=False))
    if parquet:
        table = frame.copy()
        for column in table.columns:  # Parquet wants one type per column
            if table[column].dtype == object:
                table[column] = table[column].map(lambda v: None if v is None else str(v))
        atomic_write_bytes(path.with_suffix(".parquet"), lambda handle: table.to_parquet(handle, index=False))


# Ray Tune's bookkeeping in progress.csv: left out of trials.csv unless --raw.
RAY_COLUMNS = ("timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "date",
               "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
               "iterations_since_restore")


def write_report(experiments: list[str | Path], out: str | Path, confirmations: pd.DataFrame | None = None,
                 baseline: str | None = None, raw: bool = False,
                 replicates: dict[str, int] | None = None) -> dict[str, Any]:
    """`replicates` (compare --replicates): experiment -> its replicate of the whole pipeline; the
    trials then carry a `replicate` column and the table compares across replicates."""
    experiments = unique_experiments(experiments)  # one experiment given twice, however spelled, counts once
    ids = [experiment_id(p) for p in experiments]
    out = check_output_path(out, "--out", "folder")  # before Path() folds a URI's '//' into a local name
    paths = [local_path(p) for p in experiments]
    records = {i: read_record(p) for i, p in zip(ids, paths)}  # before --out: `..` is named as no experiment
    check_out_dir(out, [Path(i) for i in ids if not is_uri(i)])
    labels = method_labels(records)
    methods = list(dict.fromkeys(labels.values()))
    if baseline is not None and baseline not in methods:
        raise ConfigError(f"--baseline {baseline!r} is not a method of these experiments; choose from: "
                          f"{', '.join(methods)}")
    frame = load_experiments(experiments)
    metrics = {r["metric"] for r in records.values()}
    if frame.empty or "experiment" not in frame or not any(m in frame and frame[m].notna().any() for m in metrics):
        raise ConfigError(f"{', '.join(map(redact, experiments))}: no trial has reported a result yet (stopped "
                          "before its first epoch?); nothing to report - `tunelab resume` it first")
    frame["method"] = frame["experiment"].map(labels)
    if replicates:
        frame["replicate"] = frame["experiment"].map({experiment_id(e): r for e, r in replicates.items()})
    summary = pd.concat([trial_summary(frame[frame["experiment"] == i], records[i]["metric"], records[i]["mode"])
                         for i in ids], ignore_index=True)
    spaces = {labels[e]: r["search_space"] for e, r in records.items()}
    table = comparison_table(summary, confirmations, baseline=baseline, spaces=spaces)
    per_replicate = replicate_table(summary, confirmations, table, spaces)
    importances, notes = [], {}
    for method, trials in summary.groupby("method", sort=False):
        found, notes[method] = method_importance(trials, [r for e, r in records.items() if labels[e] == method],
                                                 spaces.get(method, []))
        importances.append(found.assign(method=method)[["method", "param", "importance"]])
    importance_frame = pd.concat(importances, ignore_index=True) if importances else pd.DataFrame()

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {str(out)!r} cannot be made ({exc.strerror}); choose a folder you can write") from None
    frame, summary = _shown(frame), _shown(summary)  # an experiment's URI is written without its password
    _write_frame(frame if raw else frame.drop(columns=[c for c in RAY_COLUMNS if c in frame]), out / "trials.csv")
    _write_frame(summary, out / "trial_summary.csv")
    _write_frame(table, out / "comparison.csv", parquet=True)
    if per_replicate is not None:
        _write_frame(per_replicate, out / "comparison_by_replicate.csv")
    _write_frame(importance_frame, out / "importance.csv")
    if confirmations is not None:
        _write_frame(confirmations, out / "confirmations.csv")
    plots = write_plots(frame, summary, importance_frame, spaces, out / "plots", table)
    atomic_write_text(out / "report.md", markdown(table, importance_frame, notes, plots, records, out, per_replicate))
    return {"out": str(out), "table": table, "plots": [str(p) for p in plots]}


def replicate_table(summary: pd.DataFrame, confirmations: pd.DataFrame | None, table: pd.DataFrame,
                    spaces: dict) -> pd.DataFrame | None:
    """Each replicate's own comparison (seed-only intervals), when the trials come from several."""
    if "replicate" not in summary or summary["replicate"].nunique() < 2:
        return None
    empty = pd.DataFrame(columns=["replicate", "method", "dataset", "seed", M.TEST_ACC])
    return by_replicate(summary, confirmations if confirmations is not None else empty,
                        str(table["baseline"].iloc[0]), spaces)


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    if "experiment" not in frame:
        return frame
    return frame.assign(experiment=frame["experiment"].map(lambda e: redact(str(e))))


# How a trial's status is drawn: ASHA-stopped and diverged trials are told apart from finished ones.
# Why the headline over replicates is the paired t over the replicates' mean differences.
