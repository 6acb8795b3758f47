"""The comparison across replicates of the whole pipeline (compare --replicates R, R > 1).

Replicate r has its own data draw (training images and validation split), its own search and its
own confirmation seeds; every method of a replicate saw the same images. The headline difference
to the baseline is the paired t over the replicates' mean differences (R - 1 degrees of freedom):
- a replicate's mean over its seeds already carries that replicate's seed noise, so the spread of
  the replicate means holds all three sources (seeds, data draw, search) and nothing is counted twice;
- replicates are the independent unit: seeds within one replicate share its draw and its search,
  so treating seeds as independent would understate the spread;
- pairing by replicate removes what the methods of one replicate share (the same images), which
  is what makes the comparison fair.
Beside it, `seed_diff_ci95_low/high` is the seed-only interval of the same mean difference (each
replicate's draw and search held fixed, `tunelab.analysis.stats.within_replicates`): how wide the interval
would be if only the seeds varied. The difference between the two widths is what the data draws
and the searches add.

`by_replicate` is the one-replicate table of each replicate alone (its own seed-only Welch
intervals, Holm within it); `across_replicates` folds it into one row per method.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from tunelab.analysis.stats import detectable_diff, finite, paired, within_replicates
from tunelab.analysis.tables import (ALPHA, COMPARISON_COLUMNS, PAIRED_REPLICATES, POWER, comparison, default_baseline,
                                     mean_ci, resolve)
from tunelab.core import metrics as M


def comparison_table(summary: pd.DataFrame, confirmations: pd.DataFrame | None = None, baseline: str | None = None,
                     spaces: dict | None = None, metric: str = M.VAL_ACC) -> pd.DataFrame:
    """The comparison table of any trials: across replicates when they come from several, else
    `tunelab.analysis.tables.comparison` (one replicate's seed-only interval)."""
    if "replicate" not in summary or summary["replicate"].nunique() <= 1:
        return comparison(summary, confirmations, baseline=baseline, spaces=spaces, metric=metric)
    if confirmations is None:
        confirmations = pd.DataFrame(columns=["replicate", "method", "dataset", "seed", M.TEST_ACC])
    return across_replicates(summary, confirmations, baseline if baseline is not None else default_baseline(summary),
                             spaces, metric)


def by_replicate(summary: pd.DataFrame, confirmations: pd.DataFrame, baseline: str,
                 spaces: dict | None = None, metric: str = M.VAL_ACC) -> pd.DataFrame:
    """One row per (replicate, method, dataset): the comparison of that replicate alone."""
    frames = []
    for replicate in sorted(summary["replicate"].dropna().unique()):
        trials = summary[summary["replicate"] == replicate].drop(columns="replicate")
        confirmed = (confirmations[confirmations["replicate"] == replicate] if "replicate" in confirmations
                     else confirmations.iloc[0:0])
        table = comparison(trials, confirmed, baseline=baseline, spaces=spaces, metric=metric)
        frames.append(table.assign(replicate=int(replicate)))
    return pd.concat(frames, ignore_index=True)[["replicate", *COMPARISON_COLUMNS]]


def across_replicates(summary: pd.DataFrame, confirmations: pd.DataFrame, baseline: str,
                      spaces: dict | None = None, metric: str = M.VAL_ACC) -> pd.DataFrame:
    """One row per (method, dataset) over every replicate (columns as `tunelab.analysis.tables.comparison`)."""
    per = by_replicate(summary, confirmations, baseline, spaces, metric)
    rows = [_row(method, dataset, per, confirmations, baseline)
            for (method, dataset) in dict.fromkeys(zip(per["method"], per["dataset"]))]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        resolve([r for r in rows if r["dataset"] == dataset])  # Holm over the methods, as with one replicate
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _row(method: str, dataset: str, per: pd.DataFrame, confirmations: pd.DataFrame, baseline: str) -> dict:
    mine = per[(per["method"] == method) & (per["dataset"] == dataset)].sort_values("replicate")
    mean, std, low, high = mean_ci(mine["test_acc_mean"])  # over the replicates' means
    row = {
        "method": method, "dataset": dataset, "baseline": baseline, "replicates": len(mine),
        "trials": int(mine["trials"].sum()), "epochs": int(mine["epochs"].sum()),
        "compute_s": float(mine["compute_s"].sum()),  # every replicate's search
        "best_val_acc": _mean(mine["best_val_acc"]), "confirm_val_acc_mean": _mean(mine["confirm_val_acc_mean"]),
        "optimism": _mean(mine["optimism"]),
        # per replicate, in replicate order (comparison_by_replicate.csv has them one a row)
        "best_trial": ",".join("" if t is None else str(t) for t in mine["best_trial"]), "best_epoch": None,
        "best_config": json.dumps([json.loads(c) for c in mine["best_config"]], sort_keys=True),
        "edge_params": ",".join(dict.fromkeys(p for e in mine["edge_params"] if e for p in e.split(","))),
        "n_seeds": int(mine["n_seeds"].sum()), "seeds_dropped": int(mine["seeds_dropped"].sum()),
        "test_acc_mean": mean, "test_acc_std": std, "test_acc_ci95_low": low, "test_acc_ci95_high": high,
    }
    return {**row, **_difference(method, dataset, per, confirmations, baseline)}


def _difference(method: str, dataset: str, per: pd.DataFrame, confirmations: pd.DataFrame, baseline: str) -> dict:
    """The headline (paired t over the replicates) and the seed-only interval beside it."""
    if method == baseline:
        return {"diff_vs_baseline": math.nan, "diff_ci95_low": math.nan, "diff_ci95_high": math.nan,
                "diff_test": None, "diff_p_value": math.nan, "min_detectable_diff": math.nan,
                "seed_diff_ci95_low": math.nan, "seed_diff_ci95_high": math.nan}
    replicates = sorted(per.loc[per["dataset"] == dataset, "replicate"].unique())
    test = paired(*(_means(per, m, dataset, replicates) for m in (method, baseline)))  # paired by replicate
    seeds = within_replicates(*([_seeds(confirmations, m, dataset, r) for r in replicates] for m in (method, baseline)))
    return {"diff_vs_baseline": test.diff, "diff_ci95_low": test.low, "diff_ci95_high": test.high,
            "diff_test": PAIRED_REPLICATES, "diff_p_value": test.p_value,
            "min_detectable_diff": detectable_diff(test, POWER, ALPHA),
            "seed_diff_ci95_low": seeds.low, "seed_diff_ci95_high": seeds.high}


def _means(per: pd.DataFrame, method: str, dataset: str, replicates: list) -> list[float]:
    """The method's mean test accuracy in each replicate, in the order given (NaN where it has none)."""
    mine = per[(per["method"] == method) & (per["dataset"] == dataset)].set_index("replicate")["test_acc_mean"]
    return [float(mine.get(r, math.nan)) for r in replicates]


def _seeds(confirmations: pd.DataFrame, method: str, dataset: str, replicate) -> list[float]:
    if "replicate" not in confirmations:
        return []
    chosen = confirmations[(confirmations["method"] == method) & (confirmations["dataset"] == dataset)
                           & (confirmations["replicate"] == replicate)]
    return list(chosen[M.TEST_ACC])


def _mean(values) -> float:
    x = finite(values)
    return float(np.mean(x)) if len(x) else math.nan
