"""The PNG plots of `tunelab report`: learning curves, each trial's history, the most important
parameters against the metric, and a forest of the compared differences."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tunelab.analysis.tables import applied_case, envelope_row
from tunelab.core.statuses import TrialStatus
from tunelab.core import metrics as M
from tunelab.trainables.fileio import atomic_write_bytes


TOP_TRIALS = 5  # trials drawn in each method's history plot
PARAM_PLOTS = 3  # parameters plotted per method, the most important first

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
