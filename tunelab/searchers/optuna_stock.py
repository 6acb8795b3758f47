"""`--search optuna-stock`: Ray Tune's stock OptunaSearch with Optuna's multivariate TPE (seeded),
under the same ASHA in Hyperband brackets as `--search optuna`.

It is tunelab's search without tunelab's changes to the searcher: Ray records a trial ASHA stopped
as COMPLETE with its last value (no PRUNED state, no intermediate values) and TPE ranks trials by
those values, not at a common rung. Side by side with `optuna` it isolates what they are worth.

One more difference: Ray's OptunaSearch hands a trial its values under Optuna's parameter names,
which must be the config keys, so it cannot give `lr` one range per optimizer. Each conditional
entry of the space becomes the union of its cases (the lowest low to the highest high, or every
option), drawn for every trial whether or not it applies.
"""
from __future__ import annotations

import warnings

from tunelab.search_spaces.base import Choice, Conditional, FloatRange, IntRange, SearchSpace
from tunelab.searchers.common import hyperband_or_plain_scheduler, startup_trials


class StockOptunaSearch:
    name = "optuna-stock"
    keeps_an_optuna_study = False

    def describe(self, opts) -> str:
        return f"optuna-stock (Ray's OptunaSearch, multivariate TPE; first {startup_trials(opts)} random)"

    def build(self, opts, space, study_name):
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from tunelab.search import check_space
        from tunelab.searcher import optuna_distributions

        check_space(space)  # as make_search checks it for --search optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # multivariate is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(multivariate=True, seed=opts.seed, n_startup_trials=startup_trials(opts))
        searcher = OptunaSearch(space=optuna_distributions(union_space(space)), metric=opts.metric, mode=opts.mode,
                                sampler=sampler)
        # the scheduler `--search optuna` gets, so that the two differ in the searcher alone
        return searcher, {}, hyperband_or_plain_scheduler(opts)

    def restored_param_space(self, opts, record, path):
        return None  # Ray restores OptunaSearch, which samples itself

    def rebuild(self, search_alg, trials) -> bool:
        return False  # Ray's OptunaSearch keeps its study only in its snapshot

    def add_to_snapshot(self, search_alg, snapshot, trials) -> bool:
        return False  # Ray's OptunaSearch cannot be told a trial it did not suggest


SEARCHER = StockOptunaSearch()


def union_space(space: SearchSpace) -> SearchSpace:
    """The space with each conditional entry replaced by the union of its cases; an entry whose
    cases are of different kinds is left out (the config's value stands)."""
    flat: SearchSpace = {}
    for name, entry in space.items():
        if not isinstance(entry, Conditional):
            flat[name] = entry
            continue
        cases = [case for _, case in entry.cases if case is not None]
        kinds = {type(case) for case in cases}
        if kinds == {Choice}:
            flat[name] = Choice(tuple(dict.fromkeys(option for case in cases for option in case.options)))
        elif kinds in ({FloatRange}, {IntRange}):
            flat[name] = kinds.pop()(min(case.low for case in cases), max(case.high for case in cases),
                                     log=all(case.log for case in cases))
    return flat
