"""`tunelab report`: tables (CSV and Parquet), PNG plots and a markdown report for experiments.

Written only under OUT, never into an experiment folder.
"""
from __future__ import annotations

import json

from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.analysis.load import (experiment_id, load_experiments, local_path, read_record, trial_summary,
                           unique_experiments)
from tunelab.analysis.record import is_experiment, is_uri, redact, split_password
from tunelab.analysis.replicates import by_replicate, comparison_table
from tunelab.analysis.tables import (applied_case, envelope_row, format_table, importance, importance_note,
                             study_importance)
from tunelab.core.statuses import TrialStatus
from tunelab.trainables import metrics as M
from tunelab.trainables.errors import ConfigError
from tunelab.trainables.fileio import atomic_write_bytes, atomic_write_text, check_output_path

TOP_TRIALS = 5
PARAM_PLOTS = 3


def _enclosing_experiments(resolved: Path) -> list[Path]:
    """The experiment folders `resolved` is, or lies inside, the innermost first."""
    return [p for p in (resolved, *resolved.parents) if is_experiment(p)]


def check_not_in_an_experiment(out: str | Path) -> None:
    """`best --out FILE`: never inside an experiment folder (reading never writes into one)."""
    inside = _enclosing_experiments(Path(out).resolve())
    if inside:
        raise ConfigError(f"--out {str(out)!r} is inside experiment {str(inside[0])!r}; tunelab never writes "
                          "into an experiment folder, choose a file outside it")


def check_out_dir(out: Path, experiments: list[Path]) -> None:
    """A report folder is never an experiment or inside one (listed or not), never a file, and never
    a folder of other files: an existing non-empty folder must hold an earlier tunelab report."""
    out = check_output_path(out, "--out", "folder")
    resolved = out.resolve()
    inside = _enclosing_experiments(resolved)
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


# ----------------------------------------------------------------------------- plots

# How a trial's status is drawn: ASHA-stopped and diverged trials are told apart from finished ones.
STATUS_STYLE = {TrialStatus.FINISHED: dict(color="tab:blue", marker="o", linestyle="-"),
                TrialStatus.STOPPED: dict(color="tab:gray", marker=".", linestyle="--"),
                TrialStatus.DIVERGED: dict(color="tab:red", marker="x", linestyle=":"),
                TrialStatus.ERRORED: dict(color="black", marker="x", linestyle=":"),
                TrialStatus.INCOMPLETE: dict(color="tab:orange", marker=".", linestyle="-."),
                TrialStatus.OUT_OF_TIME: dict(color="tab:purple", marker=".", linestyle="-.")}


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def write_plots(frame, summary, importance_frame, spaces, folder: Path, table=None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    written = [_forest(table, folder)] if table is not None else []
    for method, rows in frame.groupby("method", sort=False):
        trials = summary[summary["method"] == method]
        written.append(_learning_curves(method, rows, trials, folder))
        written.append(_history(method, rows, folder))
        top = importance_frame[importance_frame["method"] == method].head(PARAM_PLOTS) \
            if not importance_frame.empty else pd.DataFrame(columns=["param"])
        params = list(top["param"]) or [e["name"] for e in spaces.get(method, [])][:PARAM_PLOTS]
        for param in params:
            written.append(_param_plot(method, param, trials, spaces.get(method, []), folder))
    return [p for p in written if p is not None]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write_bytes(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
    return path


def _learning_curves(method, rows, trials, folder) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    top = trials.dropna(subset=[M.VAL_ACC]).nlargest(TOP_TRIALS, M.VAL_ACC)
    for _, trial in top.iterrows():
        curve = rows[rows["trial_id"] == trial["trial_id"]].sort_values(M.EPOCH)
        style = dict(STATUS_STYLE.get(trial.get("status"), STATUS_STYLE[TrialStatus.FINISHED]))
        style.pop("color")
        ax.plot(curve[M.EPOCH], curve[M.VAL_ACC], **style,
                label=f"{trial['trial_id']} ({trial[M.VAL_ACC]:.3f}, {trial.get('status', '?')})")
    ax.set(xlabel=M.EPOCH, ylabel=M.VAL_ACC, title=f"{method}: learning curves of the top {len(top)} trials")
    _integer_ticks(ax.xaxis)
    if len(top):
        ax.legend(fontsize=7)
    return _save(fig, folder / f"learning_curves_{method}.png")


def _history(method, rows, folder) -> Path:
    """Best-so-far val/acc against trials started and against epochs consumed."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    scored = rows.dropna(subset=[M.VAL_ACC])
    order = "timestamp" if "timestamp" in scored else M.EPOCH
    by_trial = scored.groupby("trial_id").agg(start=(order, "min"), best=(M.VAL_ACC, "max")).sort_values("start")
    left.plot(range(1, len(by_trial) + 1), by_trial["best"].cummax(), drawstyle="steps-post")
    left.scatter(range(1, len(by_trial) + 1), by_trial["best"], s=12, alpha=0.6)
    left.set(xlabel="trials (in start order)", ylabel="best val/acc so far")
    epochs = scored.sort_values(order)
    right.plot(range(1, len(epochs) + 1), epochs[M.VAL_ACC].cummax(), drawstyle="steps-post")
    right.set(xlabel="epochs consumed", ylabel="best val/acc so far")
    _integer_ticks(left.xaxis)
    _integer_ticks(right.xaxis)
    fig.suptitle(f"{method}: optimisation history")
    return _save(fig, folder / f"history_{method}.png")


def _param_plot(method, param, trials, space, folder) -> Path | None:
    """Each trial's best val/acc against one hyperparameter, marked by status."""
    import matplotlib.pyplot as plt

    column = "config/" + param
    if column not in trials:
        return None
    data = trials.dropna(subset=[M.VAL_ACC])
    entry = next((e for e in space if e["name"] == param), {})
    if entry.get("type") == "Conditional":  # only the trials that sampled it (not Adam's momentum)
        configs = data[[c for c in data if c.startswith("config/")]].rename(columns=lambda c: c[len("config/"):])
        data = data[[applied_case(entry, config, space) is not None for config in configs.to_dict("records")]]
        entry = envelope_row(entry) or {}
    fig, ax = plt.subplots(figsize=(5, 3.6))
    values = data[column]
    categorical = "options" in entry or values.dtype == object or values.dtype == bool
    if categorical:
        labels = values.astype(str)
        categories = sorted(labels.unique())
        positions = labels.map(categories.index)
        ax.set_xticks(range(len(categories)), categories, rotation=20)
    else:
        positions = values.astype(float)
        if entry.get("log"):
            ax.set_xscale("log")
        if entry.get("type") == "IntRange":
            _integer_ticks(ax.xaxis)
    statuses = data["status"] if "status" in data else pd.Series(TrialStatus.FINISHED.value, index=data.index)
    for status, style in STATUS_STYLE.items():
        chosen = statuses == status
        if chosen.any():
            ax.scatter(positions[chosen], data.loc[chosen, M.VAL_ACC], color=style["color"], marker=style["marker"],
                       label=status)
    ax.legend(fontsize=7)
    ax.set(xlabel=param, ylabel="best val/acc of the trial", title=f"{method}: {param}")
    return _save(fig, folder / f"param_{method}_{param.replace('/', '_')}.png")


def _forest(table: pd.DataFrame, folder: Path) -> Path | None:
    """Test accuracy per method with its 95% interval, and each method's difference to the
    baseline with its interval (Welch): the comparison at a glance. None without confirmations."""
    import matplotlib.pyplot as plt

    rows = table[table["n_seeds"].fillna(0) > 0]
    if rows.empty:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.6 * len(rows) + 1.6), sharey=True)
    y = list(range(len(rows)))[::-1]
    for axis, mean, low, high, title in (
            (left, "test_acc_mean", "test_acc_ci95_low", "test_acc_ci95_high", "test accuracy, 95% CI"),
            (right, "diff_vs_baseline", "diff_ci95_low", "diff_ci95_high",
             f"difference to {rows['baseline'].iloc[0]}, 95% CI")):
        centre = rows[mean].astype(float)
        errors = [(centre - rows[low].astype(float)).fillna(0), (rows[high].astype(float) - centre).fillna(0)]
        axis.errorbar(centre, y, xerr=errors, fmt="o", capsize=3)
        axis.set(title=title)
    right.axvline(0, color="gray", linewidth=1)
    left.set_yticks(y, rows["method"])
    return _save(fig, folder / "forest.png")


# ----------------------------------------------------------------------------- markdown

def task(record: dict) -> str:
    """The data an experiment trained on, as a reader needs it: dataset, class subset, images per
    class, and the backbone it fine-tuned (when one was fixed)."""
    fixed = record.get("fixed", {})
    parts = [str(record["dataset"])]
    if fixed.get("classes"):
        parts.append(f"classes {fixed['classes']}")
    if int(fixed.get("train_per_class") or 0):
        parts.append(f"{fixed['train_per_class']} training images per class")
    if "split_seed" in fixed:  # one replicate's data draw (compare --replicates)
        parts.append(f"split_seed {fixed['split_seed']}")
    if fixed.get("pretrained"):
        parts.append(f"backbone {Path(str(fixed['pretrained'])).name}")
    return ", ".join(parts)


def resolution_lines(table: pd.DataFrame) -> list[str]:
    """One sentence per method against the baseline: the difference, its interval and what the
    interval excludes, whether it is resolved after Holm's correction, and the difference these
    seeds could detect with 80% power."""
    from tunelab.analysis.tables import ALPHA, COVERAGE, POWER, replicate_count, replicate_coverage

    replicates = replicate_count(table)
    lines = ["### What the differences can bear", ""]
    for _, r in table.iterrows():
        if r["method"] == r["baseline"]:
            continue
        if pd.isna(r["diff_vs_baseline"]) or pd.isna(r.get("diff_p_value")):
            lines.append(f"- **{r['method']}** vs {r['baseline']}: no interval (fewer than 2 "
                         f"{'confirmation seeds' if replicates == 1 else 'replicates with confirmation seeds'}).")
            continue
        verdict = (f"resolved (Holm-adjusted p = {r['diff_p_holm']:.3g} < {ALPHA:g})" if r["diff_resolved"] else
                   f"not resolved (Holm-adjusted p = {r['diff_p_holm']:.3g})")
        across = f" across {int(r['replicates'])} replicates" if replicates > 1 else ""
        lines.append(f"- **{r['method']}** vs {r['baseline']}: {r['diff_vs_baseline']:+.4f} "
                     f"[{r['diff_ci95_low']:+.4f}, {r['diff_ci95_high']:+.4f}]{across}, {verdict}; "
                     f"{interval_meaning(r['diff_ci95_low'], r['diff_ci95_high'])}; with {_sizes(r, replicates)} "
                     f"and this spread, a true difference of {r['min_detectable_diff']:.4f} would be "
                     f"detected with {POWER:.0%} power{_seed_only_words(r, replicates)}.")
    if len(lines) > 2:
        test = "Welch's unadjusted p" if replicates == 1 else "the paired t's unadjusted p over the replicates"
        lines += ["", f"Resolved means Holm-adjusted p < {ALPHA:g} over the methods compared with the baseline "
                      f"(column `diff_p_holm`; `diff_p_value` is {test}).",
                  f"The {COVERAGE if replicates == 1 else replicate_coverage(replicates)}."]
        lines += [] if replicates == 1 else ["", *REPLICATES_WHY]
    return lines


# Why the headline over replicates is the paired t over the replicates' mean differences.
REPLICATES_WHY = [
    "Why the paired t over replicates: a replicate's mean over its seeds already carries that replicate's "
    "seed noise, so the replicates' spread holds the seeds, the data draw and the search alike; the "
    "replicates are the independent unit (seeds of one replicate share its draw and search); and pairing "
    "each method with the baseline in the same replicate removes what they share, the same images. "
    "The seed-only interval (`seed_diff_ci95_low`, `seed_diff_ci95_high`) holds each replicate's draw and "
    "search fixed: what is left when only the seeds vary."]


def _sizes(r, replicates: int) -> str:
    return f"{int(r['n_seeds'])} seeds" if replicates == 1 else f"{int(r['replicates'])} replicates"


def _seed_only_words(r, replicates: int) -> str:
    if replicates == 1 or pd.isna(r.get("seed_diff_ci95_low")):
        return ""
    return (f"; over the seeds only (each replicate's draw and search held fixed) the interval would be "
            f"[{r['seed_diff_ci95_low']:+.4f}, {r['seed_diff_ci95_high']:+.4f}]")


def selection_lines(table: pd.DataFrame) -> list[str]:
    """Per method: the search's selection value, the confirmation seeds' val by the same epoch rule,
    their difference (the optimism of selecting the best of many trials) and test."""
    from tunelab.analysis.tables import replicate_count

    rows = table[table["confirm_val_acc_mean"].notna()] if "confirm_val_acc_mean" in table else table.iloc[:0]
    if rows.empty:
        return []
    replicated = replicate_count(table) > 1
    lines = ["### Selection bias", "",
             "Best val is the search's best trial at its best epoch; confirmation val is the confirmation seeds' "
             "mean val at their best epoch (the same rule; test is measured at that epoch); optimism is their "
             "difference." + (" With replicates, each is the mean over the replicates." if replicated else ""), "",
             "| method | best val (selection) | confirmation val | optimism | test |",
             "|---|---|---|---|---|"]
    for _, r in rows.iterrows():
        lines.append(f"| {r['method']} | {r['best_val_acc']:.4f} | {r['confirm_val_acc_mean']:.4f} | "
                     f"{r['optimism']:+.4f} | {r['test_acc_mean']:.4f} |")
    return lines


def replicate_lines(per_replicate: pd.DataFrame) -> list[str]:
    """Each replicate's own comparison: its test means and its seed-only difference to the baseline."""
    lines = ["### Replicates", "",
             "Each replicate alone: its own draw of the training images and validation split, its own search "
             "and seeds; the difference's interval there is over its seeds only (Welch; all columns in "
             "`comparison_by_replicate.csv`).", "",
             "| replicate | method | best val (selection) | test (mean over seeds) | vs baseline, seeds only |",
             "|---|---|---|---|---|"]
    for _, r in per_replicate.iterrows():
        diff = "baseline" if r["method"] == r["baseline"] else (
            "n/a" if pd.isna(r["diff_ci95_low"]) else
            f"{r['diff_vs_baseline']:+.4f} [{r['diff_ci95_low']:+.4f}, {r['diff_ci95_high']:+.4f}]")
        lines.append(f"| {r['replicate']} | {r['method']} | {r['best_val_acc']:.4f} | {r['test_acc_mean']:.4f} "
                     f"| {diff} |")
    return lines


def interval_meaning(low: float, high: float) -> str:
    """What a 95% interval of a difference excludes, in words."""
    if low > 0:
        return f"compatible with gains from {low:+.4f} to {high:+.4f}, not with no difference"
    if high < 0:
        return f"compatible with losses from {low:+.4f} to {high:+.4f}, not with no difference"
    return f"compatible with no difference, with losses down to {low:+.4f} and with gains up to {high:+.4f}"


def markdown(table: pd.DataFrame, importance_frame: pd.DataFrame, notes: dict[str, str | None], plots: list[Path],
             records, out: Path, per_replicate: pd.DataFrame | None = None) -> str:
    lines = ["# tunelab report", ""]
    forest = next((p for p in plots if p.name == "forest.png"), None)
    if forest is not None:
        lines += [f"![test accuracy and difference to the baseline, 95% intervals]({forest.relative_to(out)})", ""]
    lines += ["## Comparison", "", "```", format_table(table), "```", ""]
    lines += ["Columns: see docs/how-to/reports.md, 'The comparison table'. Test accuracy comes from confirmation runs of each "
              "method's best config (seeds), never from the search.", ""]
    lines += [*selection_lines(table), ""]
    lines += [*resolution_lines(table), ""]
    lines += [*replicate_lines(per_replicate), ""] if per_replicate is not None else []
    flagged = table[table["edge_params"].astype(bool)]
    for _, row in flagged.iterrows():
        lines.append(f"- **{row['method']}**: best value at the edge of its range for `{row['edge_params']}` "
                     "- widen the range and search again.")
    lines += ["", "## Hyperparameter importance (fANOVA)", ""]
    for method, note in notes.items():
        rows = importance_frame[importance_frame["method"] == method] if not importance_frame.empty else []
        shown = ", ".join(f"{r.param} {r.importance:.2f}" for r in rows.itertuples()) if len(rows) else None
        lines.append(f"- {method}: {shown or note or 'not computed (fANOVA could not fit these trials)'}")
    lines += ["", "## Experiments", ""]
    for path, record in records.items():
        lines.append(f"- `{redact(str(path))}`: {record['method']} on {task(record)}, search {record['search']['algorithm']}, "
                     f"scheduler {record['scheduler']['kind']} (max {record['scheduler']['max_t']} epochs), "
                     f"commit {record.get('git_commit')}")
    lines += ["", "## Plots", ""]
    for plot in plots:
        lines.append(f"![{plot.stem}]({plot.relative_to(out)})")
    return "\n".join(lines) + "\n"

