"""tunelab's search for any Ray Tune user: multivariate TPE with honest multi-fidelity feedback, and ASHA.

    from ray import tune
    from tunelab.search_spaces import FloatRange, Choice
    from tunelab.search import make_search

    space = {"lr": FloatRange(1e-4, 1e-1, log=True), "opt": Choice(("sgd", "adam"))}
    searcher, scheduler = make_search(space, "loss", "min", max_t=20, num_samples=32)
    tune.Tuner(my_function, tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
               num_samples=32)).fit()    # metric and mode may be repeated there, not changed

`tunelab tune` builds its Optuna + ASHA search with this function (tunelab.driver.build_search, through the registered searcher).
"""
from __future__ import annotations

import math
from typing import Any

from tunelab.search_spaces.base import Choice, Conditional, FloatRange, IntRange, SearchSpace, settle_conditions
from tunelab.core.errors import ConfigError

MODES = ("min", "max")


def startup_trials(num_samples: int | None) -> int:
    """Random trials before TPE models the space: a quarter of the budget, between 2 and 10."""
    return min(10, max(2, num_samples // 4)) if num_samples else 10


def check_space(space: Any) -> SearchSpace:
    """A search space is a non-empty dict of entries; a conditional entry's parent is a Choice of
    the same space with a case for each of its options."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"space must be a non-empty dict of search_spaces entries, got {space!r:.80}")
    for name, entry in space.items():
        if not isinstance(name, str) or not isinstance(entry, (FloatRange, IntRange, Choice, Conditional)):
            raise ConfigError(f"space[{name!r}] is {entry!r:.60}; use FloatRange, IntRange, Choice or Conditional")
        if isinstance(entry, Conditional) and not isinstance(space.get(entry.parent), (Choice, Conditional)):
            raise ConfigError(f"space[{name!r}] depends on {entry.parent!r}, which is not a Choice of this space "
                              "(nor a conditional entry of choices)")
        for label, param in _params(name, entry):
            for end in ("low", "high"):
                value = getattr(param, end, 0.0)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ConfigError(f"{label}.{end}={value!r} is not valid; allowed: a finite number")
    # every option a conditional entry's parent can take has its case; no cycles (chains are fine)
    settle_conditions(space, {})
    return space


def _params(name: str, entry) -> list[tuple[str, Any]]:
    """An entry's ranges and choices with the name that shows where they are in `space`."""
    if not isinstance(entry, Conditional):
        return [(f"space[{name!r}]", entry)]
    return [(f"space[{name!r}] under {entry.parent}={option!r}", case) for option, case in entry.cases
            if case is not None]


def asha_rungs(max_t: int, grace_period: int, reduction_factor: int) -> tuple[int, ...]:
    """The steps where ASHA's first bracket decides (grace_period x reduction_factor^k below max_t),
    and max_t."""
    rungs, step = [], grace_period
    while step < max_t:
        rungs.append(step)
        step *= reduction_factor
    return tuple(rungs) + (max_t,)


def make_search(space: SearchSpace, metric: str, mode: str, max_t: int, grace_period: int = 1,
                reduction_factor: int = 3, seed: int = 0, time_attr: str = "training_iteration",
                num_samples: int | None = None, *, n_startup_trials: int | None = None,
                storage: str | None = None, study_name: str | None = None,
                trial_dir_prefix: str | None = None, brackets: int = 4, rank_at_rung: bool = True):
    """(searcher, scheduler) to pass as `ray.tune.TuneConfig(search_alg=..., scheduler=...)`.

    The searcher is Optuna's multivariate TPE (seeded, constant liar for parallel trials, `group`
    for conditional spaces) inside Ray Tune. Every report is an intermediate value of the Optuna
    trial at step `result[time_attr]`; a trial that reached `max_t` is COMPLETE with its best
    value, one ASHA stopped (or that diverged) is PRUNED, one that raised is FAIL - so the study
    never mistakes a one-epoch score for a final one. TPE itself compares trials at one common
    rung (`rank_at_rung`, BOHB's rule: the highest rung that at least 10 trials reached, each trial
    valued there), not COMPLETE-before-PRUNED, which under ASHA favours whichever trials came first.

    The scheduler is ASHA on `time_attr` in `brackets` Hyperband brackets (bracket k's first rung at
    grace_period x reduction_factor^k; at most one per rung, the last without early stopping when
    there are as many brackets as rungs, as at max_t 27 with the defaults), each trial's bracket
    drawn with Hyperband's allocation (every bracket about the same budget) from a generator seeded
    with `seed`. Both get `metric` and `mode`, so TuneConfig needs neither; TuneConfig may repeat
    them (Ray then records them for `get_best_result()`), but not change them. Defaults chosen on
    the peer benchmark (benchmarks/peers.md): one bracket with stock TPE ranking was far behind
    Optuna alone and Syne Tune there.

    `num_samples` sets the random startup trials (a quarter, 2 to 10) unless `n_startup_trials`
    is given; `storage` (an Optuna RDB URL) and `study_name` keep the study for optuna-dashboard;
    `trial_dir_prefix` records each study trial's folder (`PREFIX_<ray trial id>`) as a user
    attribute next to `ray_trial_id`.
    """
    from tunelab.searcher import MultiFidelityOptunaSearch

    check_space(space)
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"metric={metric!r} is not valid; allowed: the name of a reported metric")
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not valid; choose from: {', '.join(MODES)}")
    if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                                    or num_samples < 1):
        raise ConfigError(f"num_samples={num_samples!r} is out of range; allowed: None or an integer >= 1")
    for name, value, low in (("max_t", max_t, 1), ("grace_period", grace_period, 1),
                             ("reduction_factor", reduction_factor, 2), ("brackets", brackets, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}={value!r} is out of range; allowed: an integer >= {low}")
    rungs = asha_rungs(max_t, min(grace_period, max_t), reduction_factor)
    startup = n_startup_trials if n_startup_trials is not None else startup_trials(num_samples)
    searcher = MultiFidelityOptunaSearch(space, metric, mode, max_t=max_t, seed=seed, n_startup_trials=startup,
                                         storage=storage, study_name=study_name, time_attr=time_attr,
                                         trial_dir_prefix=trial_dir_prefix,
                                         rungs=rungs if rank_at_rung else None)
    return searcher, make_scheduler(metric, mode, max_t, grace_period, reduction_factor, seed, time_attr, brackets)


def make_scheduler(metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: int, seed: int,
                   time_attr: str, brackets: int = 4):
    """make_search's scheduler alone (checked arguments): ASHA in Hyperband brackets, seeded; see
    make_search."""
    from tunelab.searcher import SeededASHA

    rungs = asha_rungs(max_t, min(grace_period, max_t), reduction_factor)
    return SeededASHA(time_attr=time_attr, metric=metric, mode=mode, max_t=max_t,
                      grace_period=min(grace_period, max_t), reduction_factor=reduction_factor,
                      brackets=min(brackets, len(rungs)), seed=seed)
