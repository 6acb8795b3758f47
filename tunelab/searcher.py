"""Optuna TPE inside Ray Tune, with multi-fidelity bookkeeping done right.

Ray's OptunaSearch tells a trial that ASHA stopped after one epoch as COMPLETE with that
one-epoch score, so TPE learns from low-budget scores as if they were final. Here each epoch's
value is an intermediate value of the Optuna trial (step = epoch), a trial that ran its full
budget is COMPLETE with its best epoch's value, one stopped early (by ASHA, or because it
diverged) is PRUNED, and one that raised is FAIL.
"""
from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search_spaces.base import Choice, Conditional, IntRange, SearchSpace, conditionals
from trainables import metrics as M


def optuna_distribution(p) -> optuna.distributions.BaseDistribution:
    if isinstance(p, Choice):
        return optuna.distributions.CategoricalDistribution(list(p.options))
    if isinstance(p, IntRange):
        return optuna.distributions.IntDistribution(p.low, p.high, log=p.log)
    return optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)


def optuna_distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {name: optuna_distribution(p) for name, p in space.items()}


def conditional_param_name(name: str, parent: str, option) -> str:
    """The Optuna parameter behind a conditional entry under one option, e.g. `lr|optimizer=sgd`:
    one distribution per name, so TPE models each optimizer's learning rate on its own."""
    return f"{name}|{parent}={option}"


class DefineByRun:
    """Samples a space with conditional entries define-by-run: plain entries first, then each
    conditional entry under its parent's sampled value (not at all where it does not apply).
    Returns the trial's config, keyed by config names (a class, so Ray can pickle the searcher)."""

    def __init__(self, space: SearchSpace):
        self.plain = {name: p for name, p in space.items() if not isinstance(p, Conditional)}
        self.conditional = conditionals(space)

    def __call__(self, trial) -> dict:
        config = {name: suggest(trial, name, p) for name, p in self.plain.items()}
        for name, entry in self.conditional.items():
            option = config[entry.parent]
            case = entry.case(option)
            if case is not None:
                config[name] = suggest(trial, conditional_param_name(name, entry.parent, option), case)
        return config


def suggest(trial, name: str, p):
    if isinstance(p, Choice):
        return trial.suggest_categorical(name, list(p.options))
    if isinstance(p, IntRange):
        return trial.suggest_int(name, p.low, p.high, log=p.log)
    return trial.suggest_float(name, p.low, p.high, log=p.log)


def tpe_sampler(seed: int, n_startup_trials: int, conditional: bool = False) -> optuna.samplers.TPESampler:
    """Seeded multivariate TPE; constant liar keeps parallel trials from piling onto one point. With
    conditional entries, `group` lets TPE model each sub-space (e.g. each optimizer's lr) jointly."""
    import warnings

    with warnings.catch_warnings():  # `group` is marked experimental; it is Optuna's answer to conditional spaces
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=n_startup_trials, group=conditional)


class MultiFidelityOptunaSearch(OptunaSearch):
    def __init__(self, space: SearchSpace, metric: str, mode: str, max_t: int, seed: int, n_startup_trials: int,
                 storage: str | None = None, study_name: str | None = None, time_attr: str = M.EPOCH,
                 trial_dir_prefix: str | None = None):
        rdb = optuna.storages.RDBStorage(storage) if storage else None
        conditional = bool(conditionals(space))
        super().__init__(space=DefineByRun(space) if conditional else optuna_distributions(space), metric=metric,
                         mode=mode, sampler=tpe_sampler(seed, n_startup_trials, conditional), storage=rdb,
                         study_name=study_name)
        self._max_t = max_t
        self._time_attr = time_attr
        self._trial_dir_prefix = trial_dir_prefix  # trial folders are PREFIX_<ray trial id> (driver.trial_dirname)

    def _suggest_from_define_by_run_func(self, func, ot_trial) -> dict:
        # Ray merges the Optuna parameter names (lr|optimizer=sgd) into the config; the trial's
        # config is what DefineByRun returns, keyed by config names.
        return func(ot_trial)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and "ray_trial_id" not in ot_trial.user_attrs:
            # links the study (optuna-dashboard) to the trial's folder on disk
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            if getattr(self, "_trial_dir_prefix", None):
                ot_trial.set_user_attr("trial_dir", f"{self._trial_dir_prefix}_{trial_id}")
        return config

    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore, then close the study trials a killed driver left RUNNING.

        A trial the driver asked for after its last experiment snapshot is unknown to the
        restored search (Ray starts a new one in its place), but a persistent study still holds
        it as RUNNING, forever: optuna-dashboard would show it running and TPE treats it as
        pending. Every RUNNING study trial that the restored search does not track is told FAIL.
        """
        super().restore(checkpoint_path)
        tracked = {t._trial_id for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen._trial_id not in tracked:
                self._ot_study._storage.set_trial_user_attr(frozen._trial_id, "closed_by",
                                                            "resume: lost with a killed driver")
                self._ot_study.tell(frozen.number, state=TrialState.FAIL)

    def _stored(self, trial_id: str) -> optuna.trial.FrozenTrial:
        return self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)

    def _intermediate_values(self, trial_id: str) -> dict[int, float]:
        return self._stored(trial_id).intermediate_values

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if self._stored(trial_id).state.is_finished():
            return  # told before the driver was killed; Ray's older snapshot replays it
        value, step = result.get(self.metric), result.get(self._time_attr)
        if value is None or step is None or not math.isfinite(value):
            return
        if int(step) in self._intermediate_values(trial_id):
            return  # a trial resumed from a checkpoint repeats no epoch, but be safe
        self._ot_trials[trial_id].report(float(value), int(step))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if self._stored(trial_id).state.is_finished():
            # A persistent study can be newer than Ray's last snapshot: after `resume`, a trial told
            # just before the kill completes again. The study already holds its outcome.
            self._completed_trials.add(trial_id)
            return
        if result and not error:
            self.on_trial_result(trial_id, result)  # Ray hands the final epoch only to on_trial_complete
        values = self._intermediate_values(trial_id)
        state, value = self._outcome(result, values, error)
        self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        self._completed_trials.add(trial_id)

    def _outcome(self, result, values, error) -> tuple[TrialState, float | None]:
        if error or not values:
            return TrialState.FAIL, None
        ran_full_budget = bool(result) and int(result.get(self._time_attr, 0)) >= self._max_t
        diverged = bool(result) and bool(result.get(M.DIVERGED, 0))
        if ran_full_budget and not diverged:
            best = max(values.values()) if self._mode == "max" else min(values.values())
            return TrialState.COMPLETE, best
        return TrialState.PRUNED, None
