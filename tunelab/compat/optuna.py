"""Optuna internals tunelab relies on, each with the reason no public API serves.

Everything private of Optuna that tunelab touches is spelled here and nowhere else (a test counts
the uses elsewhere: none). tests/tunelab/test_compat.py pins each behaviour relied on, so a version
bump that changes one fails there first, by name.
"""
from __future__ import annotations

from typing import Any

import optuna


def storage_trial_id(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """A trial's id in its storage (`number` counts within the study; the storage calls need this
    one). Optuna keeps it private on both FrozenTrial and Trial."""
    return trial._trial_id


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage behind a study, for per-trial calls the Study API lacks (set a user attribute
    of, or read, a trial by its storage id without building an optuna.Trial)."""
    return study._storage


def trials_of(study: optuna.Study, deepcopy: bool, use_cache: bool) -> list[optuna.trial.FrozenTrial]:
    """Every trial of a study the way the TPE sampler reads them (`Study._get_trials`, with the
    cache flag `Study.get_trials` does not take)."""
    return study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache)


class StudyTrialsView:
    """A study whose trials, as a sampler reads them, are `trials(deepcopy, use_cache)` of a
    subclass; everything else is the wrapped study's. Samplers read trials through the private
    `Study._get_trials`, so that is the name a view must answer to."""

    def __init__(self, study: optuna.Study):
        self.study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self.study, name)

    def trials(self, deepcopy: bool, use_cache: bool) -> list[optuna.trial.FrozenTrial]:
        return trials_of(self.study, deepcopy, use_cache)

    def _get_trials(self, deepcopy=True, states=None, use_cache=False):
        return [t for t in self.trials(deepcopy, use_cache) if states is None or t.state in states]


class TPESamplerOverStudyView(optuna.samplers.TPESampler):
    """TPESampler whose relative (multivariate) sampling reads the study through `study_view`.
    TPE's sampling step is the private `_sample`; this is its one override."""

    def study_view(self, study: optuna.Study) -> Any:
        return study

    def _sample(self, study, trial, search_space):
        return super()._sample(self.study_view(study), trial, search_space)
