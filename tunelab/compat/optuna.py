"""Optuna internals tunelab relies on, each with the reason no public API serves.

Everything private of Optuna that tunelab touches is spelled here and nowhere else (a test counts
the uses elsewhere: none). tests/tunelab/test_compat.py pins each behaviour relied on, so a version
bump that changes one fails there first, by name.
"""
from __future__ import annotations

import copy
import threading
from typing import Any

import optuna
from optuna.trial import TrialState


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
    TPE's sampling step is the private `_sample`; this is its one override.

    Costs that grow with the study are paid once, not again and again, with the same samples:
    - With `group=True` TPE samples each group of parameters with its own `_sample` call (5 for
      the classifier's space); one view serves every group of a suggestion, since nothing changes
      in the study in between. A view may then keep what it computed from the trials.
    - For the same reason a running trial's parameters (which TPE's constant liar reads from JSON
      in the trial's system attributes, `_get_params`) are read once a suggestion, not once per
      group and estimator: with 256 trials running this was a quarter of a suggestion.
    - With `group=True` Optuna finds the groups again from every finished trial at each suggestion
      (0.2 s at 10,000 trials); `FirstSeenGroups` reads each set of parameters once.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._views: dict[int, tuple[Any, dict]] = {}  # thread -> (the view, running trials' params) of its suggestion
        if self._group_decomposed_search_space is not None:
            self._group_decomposed_search_space = FirstSeenGroups(include_pruned=True)

    def __setstate__(self, state: dict) -> None:
        # A sampler pickled before these savings (an experiment of an earlier tunelab) lacks them.
        self.__dict__.update(state)
        self.__dict__.setdefault("_views", {})
        if self._group_decomposed_search_space is not None and not isinstance(self._group_decomposed_search_space,
                                                                               FirstSeenGroups):
            self._group_decomposed_search_space = FirstSeenGroups(include_pruned=True)

    def study_view(self, study: optuna.Study) -> Any:
        return study

    def sample_relative(self, study, trial, search_space):
        thread = threading.get_ident()
        self._views[thread] = (self.study_view(study), {})
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            del self._views[thread]

    def _sample(self, study, trial, search_space):
        suggestion = self._views.get(threading.get_ident())
        return super()._sample(suggestion[0] if suggestion else self.study_view(study), trial, search_space)

    def _get_params(self, trial, study):
        if trial.state.is_finished():  # its params, as Optuna reads them
            return super()._get_params(trial, study)
        suggestion = self._views.get(threading.get_ident())
        if suggestion is None:
            return super()._get_params(trial, study)
        read, trial_id = suggestion[1], storage_trial_id(trial)
        if trial_id not in read:
            read[trial_id] = super()._get_params(trial, study)
        return read[trial_id]


class FirstSeenGroups:
    """Optuna's `_GroupDecomposedSearchSpace` (the groups of parameters that `group=True` TPE models
    jointly), the same groups in the same order, without reading every trial again at each call.

    Optuna refines a partition of the parameter names by each finished trial's set of names, in
    trial-number order, from scratch at each call. A refinement by a set of names already applied
    changes nothing (the partition already refines it), so the result is the same refinement by
    each distinct set of names, in the order of the first trial that has it: those are all this
    keeps. A trial that finishes late with a smaller number than a set's first is caught by number.
    """

    def __init__(self, include_pruned: bool):
        from optuna.search_space.group_decomposed import _SearchSpaceGroup

        self._make_group = _SearchSpaceGroup
        self._study = None  # whose trials were read: another study's trials share storage ids
        self._states = (TrialState.COMPLETE, TrialState.PRUNED) if include_pruned else (TrialState.COMPLETE,)
        self._read: set[int] = set()  # storage ids of the finished trials already read
        self._first: dict[frozenset, tuple[int, dict]] = {}  # set of names -> (first number, its distributions)
        self._group = self._make_group()

    def __getstate__(self) -> dict:  # the searcher's snapshot carries the study already; read again after a restore
        return {"include_pruned": TrialState.PRUNED in self._states}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["include_pruned"])

    def calculate(self, study: optuna.Study, use_cache: bool = False):
        if study is not self._study:
            self.__init__(TrialState.PRUNED in self._states)
            self._study = study
        changed = False
        for trial in study._get_trials(deepcopy=False, states=self._states, use_cache=use_cache):
            if storage_trial_id(trial) in self._read:
                continue
            self._read.add(storage_trial_id(trial))
            names = frozenset(trial.distributions)
            if names not in self._first or trial.number < self._first[names][0]:
                self._first[names] = (trial.number, trial.distributions)
                changed = True
        if changed:
            self._group = self._make_group()
            for _, distributions in sorted(self._first.values(), key=lambda first: first[0]):
                self._group.add_distributions(distributions)
        return copy.deepcopy(self._group)
