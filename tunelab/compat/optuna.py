"""Optuna internals tunelab relies on, each with the reason no public API serves.

Everything private of Optuna that tunelab touches is spelled here and nowhere else (a test counts
the uses elsewhere: none). tests/tunelab/test_compat.py pins each behaviour relied on, so a version
bump that changes one fails there first, by name.
"""
from __future__ import annotations

import copy
import threading
from typing import Any

import numpy as np
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

    Costs that grow with the study are paid once a suggestion, not again and again, with the same
    samples. With `group=True` TPE samples each group of parameters with its own `_sample` call (5
    for the classifier's space), and nothing changes in the study in between, so within one
    suggestion (`_Suggestion`):
    - one view serves every group (a view may then keep what it computed from the trials);
    - the trials are split into TPE's "below" and "above" once: the split depends on the trials'
      states and values, not on the group's parameters;
    - each trial's parameters are read once (a running trial's from JSON in its system attributes,
      TPE's constant liar), and turned into TPE's internal numbers once per parameter, not once
      per group and estimator (`_Columns`).
    With `group=True` Optuna also finds the groups again from every finished trial at each
    suggestion (0.2 s at 10,000 trials); `FirstSeenGroups` reads each set of parameters once.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._views: dict[int, _Suggestion] = {}  # thread -> what its suggestion computed so far
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
        self._views[thread] = _Suggestion(self.study_view(study))
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            del self._views[thread]

    def _sample(self, study, trial, search_space):
        suggestion = self._views.get(threading.get_ident())
        if suggestion is None:  # outside sample_relative (TPE's independent sampling): Optuna's own step
            return super()._sample(self.study_view(study), trial, search_space)
        # Optuna's `_sample` (5.0) from here on, with the split made once a suggestion
        view = suggestion.view
        if suggestion.split is None:
            suggestion.split = self._split(view, trial)
        below, above = suggestion.split
        mpe_below = self._build_parzen_estimator(view, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(view, search_space, above, handle_below=False)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acquisition = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        chosen = optuna.samplers.TPESampler._compare(samples_below, acquisition)
        return {name: distribution.to_external_repr(chosen[name]) for name, distribution in search_space.items()}

    def _split(self, study, trial) -> tuple[list, list]:
        """TPE's trials for `trial`'s suggestion split into the good ("below") and the rest, as
        Optuna's `_sample` splits them."""
        from optuna.samplers._tpe import sampler as tpe

        states = [TrialState.COMPLETE, TrialState.PRUNED] + ([TrialState.RUNNING] if self._constant_liar else [])
        trials = study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
        if self._constant_liar:
            trials = [t for t in trials if trial.number != t.number]
        if self._gamma is None:
            self._gamma = tpe.default_gamma if len(study.directions) <= 1 else tpe.default_gamma_multiobjective
        finished = sum(t.state != TrialState.RUNNING for t in trials)
        return tpe._split_trials(study, trials, self._gamma(finished))

    def _get_internal_repr(self, trials, search_space, study):
        suggestion = self._views.get(threading.get_ident())
        if suggestion is None:
            return super()._get_internal_repr(trials, search_space, study)
        columns = suggestion.columns.get(id(trials))
        if columns is None or columns.trials is not trials:
            columns = suggestion.columns[id(trials)] = _Columns(trials, [self._get_params(t, study) for t in trials])
        return columns.internal(search_space)

    def _get_params(self, trial, study):
        if trial.state.is_finished():  # its params, as Optuna reads them
            return super()._get_params(trial, study)
        suggestion = self._views.get(threading.get_ident())
        if suggestion is None:
            return super()._get_params(trial, study)
        trial_id = storage_trial_id(trial)
        if trial_id not in suggestion.running_params:
            suggestion.running_params[trial_id] = super()._get_params(trial, study)
        return suggestion.running_params[trial_id]


class _Suggestion:
    """What one suggestion has computed so far, for the groups after the first."""

    def __init__(self, view: Any):
        self.view = view
        self.split: tuple[list, list] | None = None
        self.columns: dict[int, _Columns] = {}  # id of a list of trials (below, above) -> its columns
        self.running_params: dict[int, dict] = {}  # storage id -> a running trial's params


class _Columns:
    """TPE's internal numbers for a list of trials, one column per parameter, computed once and
    shared by every group: what Optuna's `_get_internal_repr` returns for a group, that is, for each
    parameter of the group, the internal values of the trials that have every parameter of the
    group, in the list's order."""

    def __init__(self, trials: list, params: list[dict]):
        self.trials = trials  # kept, so that the id the columns are found by stays this list's
        self.params = params
        self._has: dict[str, np.ndarray] = {}  # name -> which trials have it
        self._values: dict[tuple, np.ndarray] = {}  # (name, distribution) -> internal values, 0 where absent

    def internal(self, search_space: dict) -> dict[str, np.ndarray]:
        if not search_space:
            return {}
        rows = np.logical_and.reduce([self._has_param(name) for name in search_space])
        if not rows.any():
            return {name: np.asarray([]) for name in search_space}  # Optuna's empty arrays (float)
        return {name: self._column(name, distribution)[rows] for name, distribution in search_space.items()}

    def _has_param(self, name: str) -> np.ndarray:
        if name not in self._has:
            self._has[name] = np.fromiter((name in p for p in self.params), dtype=bool, count=len(self.params))
        return self._has[name]

    def _column(self, name: str, distribution) -> np.ndarray:
        key = (name, distribution)
        if key not in self._values:
            present = np.asarray([distribution.to_internal_repr(p[name]) for p in self.params if name in p])
            column = np.zeros(len(self.params), dtype=present.dtype)
            column[self._has_param(name)] = present
            self._values[key] = column
        return self._values[key]


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
