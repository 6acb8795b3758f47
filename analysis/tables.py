"""Comparison tables: DataFrame -> DataFrame functions over trial summaries and confirmation runs.

`comparison` has one row per (method, dataset) with the fixed columns of COMPARISON_COLUMNS
(documented in docs/how-to/reports.md). Intervals are 95% Student-t intervals over seeds; the difference to
the baseline method uses Welch's t (unequal variances), and "resolved" uses Holm's correction over
the methods compared with the baseline on one dataset (tunelab.analysis.stats). Every interval here covers
the training seed only: one data draw and one search. Trials of several replicates of the whole
pipeline (a `replicate` column, from compare --replicates) are compared across replicates instead
(tunelab.analysis.replicates).
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tunelab.analysis.load import CONFIG_PREFIX
from tunelab.core.ranking import rank_trials
from tunelab.analysis.stats import finite, holm, min_detectable_diff, welch
from tunelab.core import metrics as M

COMPARISON_COLUMNS = [
    "method", "dataset", "trials", "epochs", "compute_s", "best_val_acc", "best_trial", "best_epoch",
    "confirm_val_acc_mean", "optimism", "n_seeds", "test_acc_mean", "test_acc_std", "test_acc_ci95_low", "test_acc_ci95_high",
    "baseline", "diff_vs_baseline", "diff_ci95_low", "diff_ci95_high", "diff_p_value", "diff_p_holm",
    "diff_resolved", "min_detectable_diff",
    "edge_params", "best_config", "seeds_dropped",
    # what the headline interval covers: with replicates, the seed-only one beside it
    "replicates", "diff_test", "seed_diff_ci95_low", "seed_diff_ci95_high",
]
WELCH_SEEDS = "welch-seeds"  # diff_test: Welch's t over one replicate's seeds
PAIRED_REPLICATES = "paired-replicates"  # diff_test: the paired t over the replicates' mean differences
EDGE_FRACTION = 0.05  # a best value in the outer 5% of its range (log-aware) is "at the edge"
ALPHA = 0.05  # family-wise, over the methods compared with the baseline (Holm)
POWER = 0.8  # the power at which min_detectable_diff is stated


def dropped(values) -> int:
    """How many of `values` `finite` drops."""
    return len(list(values)) - len(finite(values))


def mean_ci(values) -> tuple[float, float, float, float]:
    """(mean, sample std, 95% low, 95% high) by Student's t over the finite values; std and
    interval are NaN for n < 2."""
    x = finite(values)
    if len(x) == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(x) - 1)) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


def welch_diff_ci(a, b) -> tuple[float, float, float]:
    """(mean(a) - mean(b), 95% low, 95% high) by Welch's t over the finite values of each (as
    mean_ci); NaN interval when either has n < 2."""
    test = welch(a, b)
    return test.diff, test.low, test.high


def resolve(rows: list[dict[str, Any]]) -> None:
    """Holm over the rows of one dataset that have a p-value against the baseline: `diff_p_holm`,
    and `diff_resolved` when it is below ALPHA (None without a test: the baseline's own row, or
    fewer than 2 seeds)."""
    for row, adjusted in zip(rows, holm([r["diff_p_value"] for r in rows])):
        row["diff_p_holm"] = adjusted
        row["diff_resolved"] = None if math.isnan(adjusted) else bool(adjusted < ALPHA)


def applied_case(entry: dict[str, Any], config: dict[str, Any],
                 space: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """A `describe` row as it applied to one config: a conditional row becomes the row of its case
    for the config's parent value (None where it was not sampled, or the parent is unknown). With
    the space's rows, a chained row (its parent conditional too) applies only where its parent did:
    elsewhere the parent holds its default, not a draw."""
    if entry.get("type") != "Conditional":
        return entry
    parent = next((row for row in space or () if row["name"] == entry["parent"]), None)
    if parent is not None and applied_case(parent, config, space) is None:
        return None
    for case in entry["cases"]:
        if case["when"] == config.get(entry["parent"]) and case["type"] != "not sampled":
            return {**entry, **case}
    return None


def envelope_row(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A conditional row as one range over all its cases (None if any case is not sampled, or the
    cases are choices): what importance can score across every trial."""
    if entry.get("type") != "Conditional":
        return entry
    cases = entry["cases"]
    if any(c["type"] not in ("FloatRange", "IntRange") for c in cases) or len({c["type"] for c in cases}) > 1:
        return None
    return {**entry, "type": cases[0]["type"], "low": min(c["low"] for c in cases),
            "high": max(c["high"] for c in cases), "log": all(c["log"] for c in cases)}


def edge_params(best_config: dict[str, Any], space: list[dict[str, Any]]) -> list[str]:
    """Searched numeric hyperparameters whose best value lies at the edge of the searched range."""
    flagged = []
    for entry in map(lambda e: applied_case(e, best_config, space), space):
        if entry is None or "low" not in entry or entry["name"] not in best_config:
            continue
        value, low, high = best_config[entry["name"]], entry["low"], entry["high"]
        if value is None or pd.isna(value):
            continue
        if entry.get("log"):
            position = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        else:
            position = (value - low) / (high - low)
        if position <= EDGE_FRACTION or position >= 1 - EDGE_FRACTION:
            flagged.append(entry["name"])
    return flagged


def best_trials(summary: pd.DataFrame, metric: str = M.VAL_ACC, mode: str = "max") -> pd.DataFrame:
    """The best trial of each (method, dataset) by its best-epoch metric."""
    return rank_trials(summary, metric, mode).drop_duplicates(["method", "dataset"]).reset_index(drop=True)


def config_of(row: pd.Series) -> dict[str, Any]:
    return {k[len(CONFIG_PREFIX):]: plain_value(v) for k, v in row.items()
            if k.startswith(CONFIG_PREFIX) and not (not isinstance(v, (list, str)) and pd.isna(v))}


def plain_value(value):
    """A numpy scalar as the Python value it holds (configs go to JSON and YAML)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def default_baseline(summary: pd.DataFrame) -> str:
    """The method the others are compared with when none is named: finetune, else the first."""
    methods = list(dict.fromkeys(summary["method"]))
    return "finetune" if "finetune" in methods else methods[0]


def comparison(summary: pd.DataFrame, confirmations: pd.DataFrame | None = None, baseline: str | None = None,
               spaces: dict[str, list[dict]] | None = None, metric: str = M.VAL_ACC) -> pd.DataFrame:
    """One row per (method, dataset) of one replicate's trials (`tunelab.analysis.replicates.comparison_table`
    takes several). `confirmations`: rows of (method, dataset, seed, test/acc)."""
    confirmations = confirmations if confirmations is not None else pd.DataFrame(
        columns=["method", "dataset", "seed", M.TEST_ACC])
    baseline = baseline if baseline is not None else default_baseline(summary)
    best = best_trials(summary, metric).set_index(["method", "dataset"])
    rows = []
    for (method, dataset), trials in summary.groupby(["method", "dataset"], sort=False):
        rows.append(_comparison_row(method, dataset, trials, best, confirmations, baseline, spaces or {}, metric))
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        resolve([r for r in rows if r["dataset"] == dataset])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _comparison_row(method, dataset, trials, best, confirmations, baseline, spaces, metric) -> dict[str, Any]:
    top = best.loc[(method, dataset)] if (method, dataset) in best.index else None
    config = config_of(top) if top is not None else {}
    tests = confirmations[(confirmations["method"] == method) & (confirmations["dataset"] == dataset)][M.TEST_ACC]
    base = confirmations[(confirmations["method"] == baseline) & (confirmations["dataset"] == dataset)][M.TEST_ACC]
    mean, std, low, high = mean_ci(tests)
    confirm_val = _confirmation_val(confirmations, method, dataset)
    selection_val = float(top[metric]) if top is not None else math.nan
    test = welch(tests, base) if method != baseline else welch([], [])
    detectable = min_detectable_diff(tests, base, POWER, ALPHA) if method != baseline else math.nan
    return {
        "method": method, "dataset": dataset, "trials": len(trials), "epochs": int(trials["epochs"].sum()),
        "compute_s": float(trials["compute_s"].sum()),
        "best_val_acc": selection_val,
        "best_trial": top["trial_id"] if top is not None else None,
        "best_epoch": int(top["best_epoch"]) if top is not None else None,
        "confirm_val_acc_mean": confirm_val, "optimism": selection_val - confirm_val,
        "n_seeds": len(finite(tests)), "test_acc_mean": mean, "test_acc_std": std,
        "test_acc_ci95_low": low, "test_acc_ci95_high": high, "baseline": baseline,
        "diff_vs_baseline": test.diff, "diff_ci95_low": test.low, "diff_ci95_high": test.high,
        "diff_p_value": test.p_value, "min_detectable_diff": detectable,
        "edge_params": ",".join(edge_params(config, spaces.get(method, []))),
        "best_config": json.dumps(config, sort_keys=True, default=str),
        "seeds_dropped": dropped(tests),  # seeds whose test/acc is NaN/inf, left out of both intervals
        # one replicate: the headline interval is the seed-only one
        "replicates": 1, "diff_test": WELCH_SEEDS if method != baseline else None,
        "seed_diff_ci95_low": test.low, "seed_diff_ci95_high": test.high,
    }


def _confirmation_val(confirmations: pd.DataFrame, method: str, dataset: str) -> float:
    """The confirmation seeds' mean best val/acc: the same epoch rule as the search's selection value,
    so their difference (`optimism`) is the winner's curse of the search, not a change of rule."""
    if M.VAL_ACC_BEST not in confirmations:
        return math.nan
    rows = confirmations[(confirmations["method"] == method) & (confirmations["dataset"] == dataset)]
    values = finite(rows[M.VAL_ACC_BEST])
    return float(values.mean()) if len(values) else math.nan


def resolution_text(row) -> str:
    """'  resolved' / '  not resolved (80% power needs |d| > 0.043)' after a difference; '' where
    there is none."""
    resolved = row.get("diff_resolved")
    if resolved is None or pd.isna(resolved):
        return ""
    if row["diff_resolved"]:
        return "  resolved"
    return f"  not resolved ({POWER:.0%} power needs |d| > {row['min_detectable_diff']:.3f})"


COVERAGE = ("intervals: 95%, over training seeds only, for one data draw and one search (not over other "
            "draws of the training images or validation split, nor other search outcomes)")


def replicate_coverage(replicates: int) -> str:
    """What the intervals of a table over `replicates` (> 1) replicates cover."""
    return (f"intervals: 95%, across {replicates} replicates of the whole pipeline (each its own draw of the "
            "training images and validation split, its own search and its own seeds; the same test split): "
            f"test acc over the replicates' means, differences by the paired t over their mean differences "
            f"({replicates - 1} df); 'seeds only' holds each replicate's draw and search fixed")


def replicate_count(table: pd.DataFrame) -> int:
    """How many replicates of the whole pipeline the table's rows cover (1 without compare --replicates)."""
    return int(table["replicates"].max()) if "replicates" in table and table["replicates"].notna().any() else 1


def coverage_note(table: pd.DataFrame) -> str:
    """One line under the table: what its intervals cover, and the correction behind 'resolved'."""
    compared = int(table["diff_p_value"].notna().sum()) if "diff_p_value" in table else 0
    if compared == 1:  # Holm over one comparison is the test itself
        holm_part = f"; resolved = p < {ALPHA:g} (one comparison with the baseline)"
    else:
        holm_part = (f"; resolved = Holm-adjusted p < {ALPHA:g} over the {compared} comparisons with the baseline"
                     if compared else "")
    replicates = replicate_count(table)
    return (COVERAGE if replicates == 1 else replicate_coverage(replicates)) + holm_part


def _seed_only(r) -> str:
    """The seed-only interval shown beside the headline when the table covers replicates."""
    if r["method"] == r["baseline"] or pd.isna(r.get("seed_diff_ci95_low")):
        return f"{'':>20}"
    text = f"[{r['seed_diff_ci95_low']:+.3f}, {r['seed_diff_ci95_high']:+.3f}]"
    return f"{text:>20}"


def format_table(table: pd.DataFrame) -> str:
    """The comparison as aligned text: method, trials, epochs, best val (the search's selection value),
    with confirmation seeds also their val and the optimism (best val minus it), test mean +- std
    [95% CI], and the difference to the baseline."""
    confirmed = bool(len(table)) and table["n_seeds"].sum() > 0
    replicated = replicate_count(table) > 1  # the seed-only interval beside the headline
    lines = [f"{'method':<11}{'dataset':<9}{'trials':>7}{'epochs':>7}{'best val':>10}"
             + (f"{'conf val':>10}{'optimism':>10}" if confirmed else "") + "  "
             f"{'test acc (mean +- std) [95% CI]':<36}{'vs ' + str(table['baseline'].iloc[0]) if len(table) else '':>24}"
             + (f"{'seeds only':>20}" if replicated else "")]
    for _, r in table.iterrows():
        test = "n/a" if pd.isna(r["test_acc_mean"]) else (
            f"{r['test_acc_mean']:.4f} +- {r['test_acc_std']:.4f} [{r['test_acc_ci95_low']:.3f}, "
            f"{r['test_acc_ci95_high']:.3f}]" if not pd.isna(r["test_acc_std"]) else f"{r['test_acc_mean']:.4f}")
        diff = "baseline" if r["method"] == r["baseline"] else (
            "n/a" if pd.isna(r["diff_vs_baseline"]) else
            f"{r['diff_vs_baseline']:+.4f} [{r['diff_ci95_low']:+.3f}, {r['diff_ci95_high']:+.3f}]")
        resolved = resolution_text(r)
        edge = f"  edge: {r['edge_params']}" if r["edge_params"] else ""
        selection = f"{r['confirm_val_acc_mean']:>10.4f}{r['optimism']:>+10.4f}" if confirmed else ""
        lines.append(f"{r['method']:<11}{str(r['dataset'])[:8]:<9}{r['trials']:>7}{r['epochs']:>7}"
                     f"{r['best_val_acc']:>10.4f}{selection}  {test:<36}{diff:>24}"
                     f"{_seed_only(r) if replicated else ''}{resolved}{edge}")
    if confirmed:  # confirmation seeds ran (compare), so intervals exist
        lines.append(coverage_note(table))
    return "\n".join(lines)
