"""THE rule for "the best trial", one owner for every command that names one: `tune`'s summary,
`best`, `report` and `compare`."""
from __future__ import annotations

import pandas as pd


def rank_trials(summary: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """THE rule for "the best trial", used by `tune`'s summary, `best`, `report` and `compare`:
    trials ordered by their best-epoch `metric` (per `mode`), ties broken by trial id, trials
    without a finite value left out."""
    if summary.empty or metric not in summary:
        return summary.iloc[0:0]
    values = pd.to_numeric(summary[metric], errors="coerce")
    scored = summary[values.notna() & values.abs().ne(float("inf"))]
    return scored.sort_values([metric, "trial_id"], ascending=[mode != "max", True], kind="stable")
