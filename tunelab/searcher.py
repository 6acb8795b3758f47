"""Optuna TPE inside Ray Tune, with multi-fidelity bookkeeping done right.

Ray's OptunaSearch tells a trial that ASHA stopped after one epoch as COMPLETE with that
one-epoch score, so TPE learns from low-budget scores as if they were final. Here each epoch's
value is an intermediate value of the Optuna trial (step = epoch), a trial that ran its full
budget is COMPLETE with its best epoch's value, one stopped early (by ASHA, or because it
diverged) is PRUNED, and one that raised is FAIL.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from tunelab.compat.optuna import StudyTrialsView, TPESamplerOverStudyView, storage_trial_id, study_storage
from tunelab.compat.ray import ASHAHooks, OptunaSearchHooks

from tunelab.search_spaces.base import Choice, Conditional, IntRange, SearchSpace, conditional_order, conditionals
from tunelab.core import metrics as M
from tunelab.core.statuses import FINISHED_RAY_STATUSES, RayStatus
from tunelab.core.trial_folders import trial_folder_name
from tunelab.ray_state import metric_by_step, reported_value

MIN_RUNG_TRIALS = 10  # RungTPESampler: trials a rung needs before TPE ranks at it (make_search's docstring says 10)


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
        # parents before children: a chained entry (momentum when schedule, schedule when optimizer)
        # meets its parent's value, or its absence where the parent was not sampled
        self.conditional = {name: space[name] for name in conditional_order(space)}

    def __call__(self, trial) -> dict:
        config = {name: suggest(trial, name, p) for name, p in self.plain.items()}
        for name, entry in self.conditional.items():
            if entry.parent not in config:
                continue  # its parent was not sampled in this trial: neither is it
            option = config[entry.parent]
            case = entry.case(option)
            if case is not None:
                config[name] = suggest(trial, conditional_param_name(name, entry.parent, option), case)
        return config

    def params(self, config: dict) -> dict:
        """The inverse of `__call__`: the Optuna parameters behind a config it returned (keys of other
        entries, such as fixed values, are ignored)."""
        params = {name: config[name] for name in self.plain if name in config}
        for name, entry in self.conditional.items():
            if name in config and entry.parent in config:
                params[conditional_param_name(name, entry.parent, config[entry.parent])] = config[name]
        return params


def suggest(trial, name: str, p):
    if isinstance(p, Choice):
        return trial.suggest_categorical(name, list(p.options))
    if isinstance(p, IntRange):
        return trial.suggest_int(name, p.low, p.high, log=p.log)
    return trial.suggest_float(name, p.low, p.high, log=p.log)


def tpe_sampler(seed: int, n_startup_trials: int, conditional: bool = False,
                rungs: tuple[int, ...] | None = None, min_rung_trials: int = MIN_RUNG_TRIALS) -> optuna.samplers.TPESampler:
    """Seeded multivariate TPE; constant liar keeps parallel trials from piling onto one point. With
    conditional entries, `group` lets TPE model each sub-space (e.g. each optimizer's lr) jointly.
    With `rungs` (the scheduler's stopping steps), TPE ranks trials at one common rung (RungTPESampler)."""
    import warnings

    kwargs = dict(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=n_startup_trials,
                  group=conditional)
    with warnings.catch_warnings():  # `group` is marked experimental; it is Optuna's answer to conditional spaces
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if rungs:
            return RungTPESampler(rungs, min_rung_trials, **kwargs)
        return optuna.samplers.TPESampler(**kwargs)


class RungTPESampler(TPESamplerOverStudyView):
    """TPE that compares trials at one common budget, as BOHB does.

    Stock TPE puts every COMPLETE trial above every PRUNED one. Under ASHA the trials that complete
    are mostly the ones that arrived early (a rung with few entries promotes nearly everyone), so
    TPE's "good" set is the earliest random trials, whatever their value, and the search collapses
    onto them (benchmarks/peers.md). Here TPE sees the trials that reached the highest rung with at
    least `min_rung_trials` of them, each valued at that rung's step; trials that stopped below it
    are left out, RUNNING ones kept for the constant liar. The study itself is untouched.
    """

    def __init__(self, rungs: tuple[int, ...], min_rung_trials: int, **kwargs):
        super().__init__(**kwargs)
        self._rungs = tuple(sorted(set(rungs)))
        self._min_rung_trials = min_rung_trials
        self._finished = FinishedAtRungs(self._rungs)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_finished" not in state:  # pickled by a tunelab before FinishedAtRungs
            self._finished = FinishedAtRungs(self._rungs)

    def study_view(self, study):
        return _RungView(study, self._finished, self._min_rung_trials)


def value_at_rung(trial: optuna.trial.FrozenTrial, step: int, top: int) -> float | None:
    """A finished trial's value at `step`: a COMPLETE trial's own value at the top rung, else its
    report at that step (None if it never got there)."""
    if trial.state == TrialState.COMPLETE and step == top:
        return trial.value
    return trial.intermediate_values.get(step)


def rung_view(trials: list[optuna.trial.FrozenTrial], rungs: tuple[int, ...],
              min_rung_trials: int) -> list[optuna.trial.FrozenTrial]:
    """The trials as RungTPESampler's TPE sees them: see its docstring."""
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    top = rungs[-1]
    chosen = rungs[0]
    for step in reversed(rungs):
        if sum(value_at_rung(t, step, top) is not None for t in finished) >= min_rung_trials:
            chosen = step
            break
    view = [t for t in trials if t.state == TrialState.RUNNING]
    for t in finished:
        value = value_at_rung(t, chosen, top)
        if value is None or not math.isfinite(value):
            continue
        seen = copy.copy(t)
        seen.state, seen.values = TrialState.COMPLETE, [value]
        view.append(seen)
    return sorted(view, key=lambda t: t.number)


class FinishedAtRungs:
    """What `rung_view` needs of each finished trial (its value at each rung, and its copy valued
    at the chosen one), read once: a finished trial's values never change. With 10,000 trials,
    reading them all again at each suggestion was a fifth of its cost."""

    def __init__(self, rungs: tuple[int, ...]):
        self.rungs = rungs
        self.study = None  # whose trials these are: another study's trials share storage ids
        self.reached = dict.fromkeys(rungs, 0)  # finished trials with a value at each rung
        self._values: dict[int, tuple] = {}  # storage id -> its value_at_rung at each rung
        self._seen: dict[tuple[int, int], optuna.trial.FrozenTrial] = {}  # (storage id, step) -> its copy

    def __getstate__(self) -> dict:  # the searcher's snapshot carries the study already; read again after a restore
        return {"rungs": self.rungs}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["rungs"])

    def view(self, study, trials: list[optuna.trial.FrozenTrial], min_rung_trials: int) -> list[optuna.trial.FrozenTrial]:
        """`rung_view(trials, rungs, min_rung_trials)` of `study`'s trials, from what is already read."""
        if study is not self.study:
            self.__init__(self.rungs)
            self.study = study
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        top = self.rungs[-1]
        for t in finished:
            if storage_trial_id(t) not in self._values:
                values = tuple(value_at_rung(t, step, top) for step in self.rungs)
                self._values[storage_trial_id(t)] = values
                for step, value in zip(self.rungs, values):
                    self.reached[step] += value is not None
        chosen = next((k for k in reversed(range(len(self.rungs))) if self.reached[self.rungs[k]] >= min_rung_trials), 0)
        view = [t for t in trials if t.state == TrialState.RUNNING]
        for t in finished:
            value = self._values[storage_trial_id(t)][chosen]
            if value is None or not math.isfinite(value):
                continue
            key = (storage_trial_id(t), chosen)
            if key not in self._seen:
                seen = copy.copy(t)
                seen.state, seen.values = TrialState.COMPLETE, [value]
                self._seen[key] = seen
            view.append(self._seen[key])
        return sorted(view, key=lambda t: t.number)


class _RungView(StudyTrialsView):
    """A study whose trials are `rung_view` of the real ones; everything else is the study's.

    A view lives for one suggestion (TPESamplerOverStudyView), during which the study does not
    change: the rung view is built once, not once per group of parameters TPE samples."""

    def __init__(self, study, finished: FinishedAtRungs, min_rung_trials: int):
        super().__init__(study)
        self.finished, self.min_rung_trials = finished, min_rung_trials
        self._built: list | None = None

    def trials(self, deepcopy: bool, use_cache: bool):
        if deepcopy:
            return rung_view(super().trials(deepcopy, use_cache), self.finished.rungs, self.min_rung_trials)
        if self._built is None:
            self._built = self.finished.view(self.study, super().trials(False, use_cache), self.min_rung_trials)
        return self._built


class MultiFidelityOptunaSearch(OptunaSearchHooks, OptunaSearch):
    def __init__(self, space: SearchSpace, metric: str, mode: str, max_t: int, seed: int, n_startup_trials: int,
                 storage: str | None = None, study_name: str | None = None, time_attr: str = M.EPOCH,
                 trial_dir_prefix: str | None = None, rungs: tuple[int, ...] | None = None,
                 min_rung_trials: int = MIN_RUNG_TRIALS):
        rdb = optuna.storages.RDBStorage(storage) if storage else None
        conditional = bool(conditionals(space))
        sampler = tpe_sampler(seed, n_startup_trials, conditional, rungs=rungs, min_rung_trials=min_rung_trials)
        super().__init__(space=DefineByRun(space) if conditional else optuna_distributions(space), metric=metric,
                         mode=mode, sampler=sampler, storage=rdb,
                         study_name=study_name)
        self._max_t = max_t
        self._time_attr = time_attr
        self._trial_dir_prefix = trial_dir_prefix  # the method: trial folders are tunelab.core.trial_folders

    def config_from_define_by_run(self, func, ot_trial) -> dict:
        # Ray merges the Optuna parameter names (lr|optimizer=sgd) into the config; the trial's
        # config is what DefineByRun returns, keyed by config names.
        return func(ot_trial)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        ot_trial = self.optuna_trials.get(trial_id)
        if ot_trial is not None and "ray_trial_id" not in ot_trial.user_attrs:
            # links the study (optuna-dashboard) to the trial's folder on disk
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            if getattr(self, "_trial_dir_prefix", None):
                ot_trial.set_user_attr("trial_dir", trial_folder_name(self._trial_dir_prefix, trial_id))
        return config

    def restore(self, checkpoint_path: str, close_lost_trials: bool = True) -> None:
        """Ray's restore, then close the study trials a killed driver left RUNNING (unless told not
        to: `tunelab.late_trials` first adds the ones that had run to their end).

        A trial the driver asked for after its last experiment snapshot is unknown to the
        restored search (Ray starts a new one in its place), but a persistent study still holds
        it as RUNNING, forever: optuna-dashboard would show it running and TPE treats it as
        pending. Every RUNNING study trial that the restored search does not track is told FAIL.
        """
        super().restore(checkpoint_path)
        if close_lost_trials:
            self._fail_untracked_running()

    def rebuild(self, trials) -> None:
        """Rebuild the snapshot Ray lost (tunelab.ray_state) from the ground truth: Ray's trials
        (`ray_state.RayTrial`, in creation order) and the results each wrote. With a persistent study,
        its trials are matched by their `ray_trial_id`; every trial the study lacks is added with its
        config, its intermediate values and, if it finished, its outcome (as on_trial_complete tells
        it). Trials still to run are left RUNNING in the study, linked to their Ray trial."""
        stored = {t.user_attrs.get("ray_trial_id"): t for t in self.optuna_study.get_trials(deepcopy=False)}
        for trial in trials:
            values = metric_by_step(trial.results, self.metric, self._time_attr)
            finished = trial.status in FINISHED_RAY_STATUSES
            known = stored.get(trial.trial_id)
            if known is not None:
                ot_trial = optuna.Trial(self.optuna_study, storage_trial_id(known))
            else:
                ot_trial = self._adopt(trial.trial_id, trial.config, trial.dirname)
                for step, value in sorted(values.items()):
                    ot_trial.report(value, step)
            self.optuna_trials[trial.trial_id] = ot_trial
            if not finished:
                continue
            if known is None or not known.state.is_finished():
                state, value = self._outcome(trial.last_result, values, trial.status == RayStatus.ERROR)
                self.optuna_study.tell(ot_trial, value, state=state)
            self.completed_trial_ids.add(trial.trial_id)
        self._fail_untracked_running()

    def _adopt(self, trial_id: str, config: dict[str, Any], dirname: str) -> optuna.Trial:
        """A new RUNNING study trial holding a Ray trial's sampled config (enqueued, so nothing is sampled)."""
        space = self.optuna_space
        if isinstance(space, DefineByRun):
            self.optuna_study.enqueue_trial(space.params(config))
            ot_trial = self.optuna_study.ask()
            space(ot_trial)
        else:
            self.optuna_study.enqueue_trial({name: config[name] for name in space if name in config})
            ot_trial = self.optuna_study.ask(fixed_distributions=space)
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        if dirname:
            ot_trial.set_user_attr("trial_dir", dirname)
        return ot_trial

    def _fail_untracked_running(self) -> None:
        tracked = {storage_trial_id(t) for t in self.optuna_trials.values()}
        for frozen in self.optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if storage_trial_id(frozen) not in tracked:
                study_storage(self.optuna_study).set_trial_user_attr(storage_trial_id(frozen), "closed_by",
                                                            "resume: lost with a killed driver")
                self.optuna_study.tell(frozen.number, state=TrialState.FAIL)

    def _stored(self, trial_id: str) -> optuna.trial.FrozenTrial:
        return study_storage(self.optuna_study).get_trial(storage_trial_id(self.optuna_trials[trial_id]))

    def _intermediate_values(self, trial_id: str) -> dict[int, float]:
        return self._stored(trial_id).intermediate_values

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.completed_trial_ids or trial_id not in self.optuna_trials:
            return
        if self._stored(trial_id).state.is_finished():
            return  # told before the driver was killed; Ray's older snapshot replays it
        reported = reported_value(result, self.metric, self._time_attr)
        if reported is None:
            return
        step, value = reported
        if step in self._intermediate_values(trial_id):
            return  # a trial resumed from a checkpoint repeats no epoch, but be safe
        self.optuna_trials[trial_id].report(value, step)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self.completed_trial_ids or trial_id not in self.optuna_trials:
            return
        if self._stored(trial_id).state.is_finished():
            # A persistent study can be newer than Ray's last snapshot: after `resume`, a trial told
            # just before the kill completes again. The study already holds its outcome.
            self.completed_trial_ids.add(trial_id)
            return
        if result and not error:
            self.on_trial_result(trial_id, result)  # Ray hands the final epoch only to on_trial_complete
        values = self._intermediate_values(trial_id)
        state, value = self._outcome(result, values, error)
        self.optuna_study.tell(self.optuna_trials[trial_id], value, state=state)
        self.completed_trial_ids.add(trial_id)

    def _outcome(self, result, values, error) -> tuple[TrialState, float | None]:
        if error or not values:
            return TrialState.FAIL, None
        ran_full_budget = bool(result) and int(result.get(self._time_attr, 0)) >= self._max_t
        diverged = bool(result) and bool(result.get(M.DIVERGED, 0))
        if ran_full_budget and not diverged:
            best = max(values.values()) if self.mode == "max" else min(values.values())
            return TrialState.COMPLETE, best
        return TrialState.PRUNED, None


class SeededASHA(ASHAHooks, ASHAScheduler):
    """Ray's ASHAScheduler with two changes (and TuneConfig may repeat its metric and mode).

    - Brackets are drawn with Hyperband's allocation (Li et al. 2018, also Optuna's HyperbandPruner):
      a bracket that stops trials early at s rungs gets ceil(B / (s + 1) x eta^s) trials per B drawn
      trials, so every bracket spends about the same budget. Ray weighs bracket k by e^(rungs in it),
      which left the bracket without early stopping about 3% of the trials at max_t = 27
      (benchmarks/peers.md: Hyperband's allocation caught up with Optuna alone on mfh3_good).
    - Each new trial's bracket is drawn from a generator seeded with `seed`: Ray draws from numpy's
      global one, so two searches with one seed put their trials in different brackets.
    """

    def __init__(self, *, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._rng = np.random.default_rng(seed)
        self._bracket_p = hyperband_allocation(
            [sum(step < self.max_t for step in self.early_stopping_steps(b)) for b in self.brackets],
            self.reduction_factor)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """TuneConfig's metric and mode: accepted where they repeat the scheduler's own (make_search gives
        it both, so a user need not repeat them), refused by Ray where they differ."""
        if (metric and self.metric and metric != self.metric) or (mode and self.mode and mode != self.mode):
            return False
        return super().set_search_properties(None if self.metric else metric, None if self.mode else mode, **spec)

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self.metric or not self.metric_op:
            return super().on_trial_add(tune_controller, trial)  # Ray's own error
        index = self._rng.choice(len(self.brackets), p=self._bracket_p)
        self.assign_bracket(trial.trial_id, self.brackets[index])


def hyperband_allocation(early_stops: list[int], reduction_factor: float) -> np.ndarray:
    """Probability of each bracket, given how many rungs stop trials early in it (Hyperband's n_s)."""
    brackets = len(early_stops)
    counts = np.array([math.ceil(brackets / (s + 1) * reduction_factor ** s) for s in early_stops], dtype=float)
    return counts / counts.sum()
