"""The markdown of `tunelab report`: the task, the comparison table with what each interval
covers, how the methods were selected, the per-replicate table, and the plots."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tunelab.core.redaction import redact
from tunelab.analysis.tables import format_table


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
        if shown and note:
            shown = f"{shown} ({note})"
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
