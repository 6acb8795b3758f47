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

from search_spaces.base import Choice, IntRange, SearchSpace
from trainables import metrics as M


def optuna_distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    out = {}
    for name, p in space.items():
        if isinstance(p, Choice):
            out[name] = optuna.distributions.CategoricalDistribution(list(p.options))
        elif isinstance(p, IntRange):
            out[name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log)
        else:
            out[name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
    return out


def tpe_sampler(seed: int, n_startup_trials: int) -> optuna.samplers.TPESampler:
    """Seeded multivariate TPE; constant liar keeps parallel trials from piling onto one point."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=n_startup_trials)


class MultiFidelityOptunaSearch(OptunaSearch):
    def __init__(self, space: SearchSpace, metric: str, mode: str, max_t: int, seed: int, n_startup_trials: int,
                 storage: str | None = None, study_name: str | None = None, time_attr: str = M.EPOCH,
                 trial_dir_prefix: str | None = None):
        rdb = optuna.storages.RDBStorage(storage) if storage else None
        super().__init__(space=optuna_distributions(space), metric=metric, mode=mode,
                         sampler=tpe_sampler(seed, n_startup_trials), storage=rdb, study_name=study_name)
        self._max_t = max_t
        self._time_attr = time_attr
        self._trial_dir_prefix = trial_dir_prefix  # trial folders are PREFIX_<ray trial id> (driver.trial_dirname)

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
