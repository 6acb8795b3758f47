"""Which searched parameters mattered: fANOVA importance over the full-budget trials of each method,
or over a stored Optuna study, with the note a reader needs when there are too few trials."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.analysis.load import CONFIG_PREFIX
from tunelab.analysis.tables import envelope_row, plain_value
from tunelab.core.statuses import TrialStatus
from tunelab.core import metrics as M

MIN_IMPORTANCE_TRIALS = 8  # fANOVA's forest on fewer full-budget trials ranks noise
MAX_IMPORTANCE_TRIALS = 2000  # beyond, a seeded random sample: the forest's cost grows with the trials


def scored_for_importance(summary: pd.DataFrame, metric: str = M.VAL_ACC) -> pd.DataFrame:
    """The trials importance is computed from, by the search's own multi-fidelity rule: only trials
    that ran the full budget (`finished`; Optuna's COMPLETE). An ASHA-stopped trial's early value is
    not a final score, and scoring it as one credits whatever made trials slow starters."""
    scored = summary.dropna(subset=[metric]) if metric in summary else summary.iloc[0:0]
    return scored[scored["status"] == TrialStatus.FINISHED] if "status" in scored else scored


def importance_note(summary: pd.DataFrame, metric: str = M.VAL_ACC) -> str | None:
    """Why importance is not shown for these trials, or None when it is."""
    n = len(scored_for_importance(summary, metric))
    if n > MAX_IMPORTANCE_TRIALS:
        return f"computed on a seeded random {MAX_IMPORTANCE_TRIALS} of the {n} full-budget trials"
    if n >= MIN_IMPORTANCE_TRIALS:
        return None
    return (f"not computed: {n} trial(s) ran the full budget, fANOVA needs at least {MIN_IMPORTANCE_TRIALS} "
            "(trials stopped early by ASHA are not scored as if their last epoch were final)")


def importance(summary: pd.DataFrame, space: list[dict[str, Any]], metric: str = M.VAL_ACC,
               seed: int = 0) -> pd.DataFrame:
    """fANOVA importance of each searched hyperparameter for one method's trials (Optuna's evaluator).

    Each full-budget trial enters with its best-epoch value; empty below MIN_IMPORTANCE_TRIALS of
    them (importance_note says why).
    """
    import optuna

    # A conditional entry that some trials do not sample (momentum under Adam) is left out: its
    # values there are the config default, not a draw. One that every trial samples enters with
    # the envelope of its per-option ranges.
    # A chained entry (its parent conditional too) is left out for the same reason.
    chained = {e["name"] for e in space if e.get("type") == "Conditional"
               and any(p["name"] == e["parent"] and p.get("type") == "Conditional" for p in space)}
    distributions = {e["name"]: _distribution(e) for e in map(envelope_row, space)
                     if e is not None and e["name"] not in chained}
    trials = []
    scored = scored_for_importance(summary, metric)
    if len(scored) > MAX_IMPORTANCE_TRIALS:
        scored = scored.sample(n=MAX_IMPORTANCE_TRIALS, random_state=seed)
    for _, row in scored.iterrows():
        params = {name: _param_value(row.get(CONFIG_PREFIX + name), dist) for name, dist in distributions.items()}
        if any(v is None for v in params.values()):
            continue
        trials.append(optuna.trial.create_trial(params=params, distributions=distributions,
                                                value=float(row[metric])))
    if len(trials) < MIN_IMPORTANCE_TRIALS:
        return pd.DataFrame(columns=["param", "importance"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError):
        return pd.DataFrame(columns=["param", "importance"])
    return pd.DataFrame(sorted(found.items(), key=lambda kv: -kv[1]), columns=["param", "importance"])


def study_importance(storage: str, study_name: str, seed: int = 0) -> tuple[pd.DataFrame, str | None] | None:
    """fANOVA importance read from a stored Optuna study: its COMPLETE trials are the full-budget ones
    (tunelab's searcher tells ASHA-stopped trials PRUNED). (frame, note) as `importance` and
    `importance_note`; None when the study cannot be opened (the caller falls back to the files)."""
    import optuna
    from sqlalchemy.engine import make_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        url = make_url(storage)
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            return None  # opening would create an empty database: a report never writes
        study = optuna.load_study(study_name=study_name, storage=storage)
    except Exception:  # gone, moved, another schema: the experiment's own files still answer
        return None
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    empty = pd.DataFrame(columns=["param", "importance"])
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return empty, (f"not computed: the study holds {len(complete)} COMPLETE (full-budget) trial(s), fANOVA "
                       f"needs at least {MIN_IMPORTANCE_TRIALS} (pruned trials are not scored as final)")
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError):
        return empty, "not computed (fANOVA could not fit the study's trials)"
    return pd.DataFrame(sorted(found.items(), key=lambda kv: -kv[1]), columns=["param", "importance"]), None


def _distribution(entry: dict[str, Any]):
    import optuna

    if "options" in entry:
        return optuna.distributions.CategoricalDistribution(entry["options"])
    if isinstance(entry["low"], int) and isinstance(entry["high"], int) and entry["type"] == "IntRange":
        return optuna.distributions.IntDistribution(entry["low"], entry["high"], log=entry.get("log", False))
    return optuna.distributions.FloatDistribution(entry["low"], entry["high"], log=entry.get("log", False))


def _param_value(value, dist):
    import optuna

    if value is None or (not isinstance(value, (str, list)) and pd.isna(value)):
        return None
    value = plain_value(value)
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value if value in dist.choices else None
    if isinstance(dist, optuna.distributions.IntDistribution):
        return int(value) if dist.low <= value <= dist.high else None
    return float(value) if dist.low <= value <= dist.high else None
