"""tunelab's search against the searchers a user would pick instead, side by side, same budget.

Methods (every one evaluates one config-step at a time, so "budget" is the same for all: steps of
fidelity, counted in full-budget equivalents = steps / the problem's max steps):

    tunelab        tunelab.search.make_search, as `tunelab tune` uses it, inside a ray.tune.Tuner
    tunelab_before make_search's defaults before this benchmark: one ASHA bracket, stock TPE ranking
                   (make_search(..., brackets=1, rank_at_rung=False)); not run unless named
    tunelab_1bracket  tunelab's TPE (ranked at a common rung) in one ASHA bracket, Syne Tune BOHB's
                   bracket structure (make_search(..., brackets=1)); not run unless named
    tunelab_norank tunelab's 4 brackets with stock TPE ranking (make_search(..., rank_at_rung=False));
                   with tunelab_1bracket and tunelab_before, the ablation: rank-at-rung on/off x 1/4 brackets
    ray_optuna     Ray Tune's stock OptunaSearch (TPE, seeded) + ASHAScheduler, both at their defaults
    ray_optuna_4b  Ray Tune's stock OptunaSearch given the conditional space define-by-run, under
                   tunelab's scheduler (4 Hyperband-allocated brackets, same seed): only the searcher differs
    optuna         Optuna alone, in-process: TPESampler + HyperbandPruner, at Optuna's defaults (from
                   Optuna 5.0 TPE is multivariate for one objective)
    optuna_group   Optuna alone with TPESampler(multivariate=True, group=True): a conditional space's
                   branches each modelled jointly (the same as `optuna` on a space without conditions)
    st_asha        Syne Tune ASHA          (its ask/tell API, in-process)
    st_bohb        Syne Tune BOHB
    st_ashacqr     Syne Tune ASHACQR       (conformal quantile regression + ASHA)
    st_asha_4b, st_bohb_4b, st_ashacqr_4b  the same with brackets=4 (Syne Tune's Hyperband brackets)
    random         random search, every trial at the full budget

Syne Tune also draws from numpy's global generator: each of its runs seeds it, and a trial trained
in-process leaves it as it was.

Every method gets the problem's space: tunelab, Optuna alone, ray_optuna_4b and random search with
its conditional entries (define-by-run: one learning-rate range per optimizer); ray_optuna and Syne
Tune, which take no conditions, with each conditional entry as one range covering all its cases
(the union, ignored where it does not apply). The synthetic problems have no conditional entry.

Problems:
  mfh3_good, mfh3_bad, mfh6_good, mfh6_bad  mf-prior-bench's multi-fidelity Hartmann functions (its
      own presets: 3 or 6 dimensions, a well or a badly correlated fidelity); the design problems,
      on which tunelab's defaults were chosen.
  mfh3_moderate, mfh3_terrible, mfh6_moderate, mfh6_terrible  the same family's other presets, on
      which no default was chosen: the held-out problems (benchmarks/peers-heldout.md). Their fidelity z runs
      1..100; step t = 1..27 (ASHA rungs 1, 3, 9, 27) evaluates z = 1 + 99 (t - 1) / 26, rounded.
      f* = the value at the known global minimum; f_worst = the worst of 2048 seeded uniform configs.
  digits_classifier  real training: the classifier's space on 8 px digits (width 8, 30% val), one
      epoch per step, 27 epochs; loss = 1 - val/acc; f* from the stored reference optimum
      (search_efficiency_reference.json: best of 128 random full-budget trials), f_worst = chance.
  digits_adarand     real training: AdaRand fine-tuning of the offline backbone on 8 px digits, 50
      images per class, 9 epochs, AdaRand's space; reference in peers_reference_adarand.json
      (`--reference digits_adarand`, 128 random trials at full budget).
  digits_arcface     held out, real training replayed from a table (benchmarks/replayed.py): ArcFace
      / CosFace / NormSoftmax on 8 px digits (a width-8 ResNet-18), ArcFace's conditional space,
      27 epochs; 400 configurations drawn at random (seed TABLE_SEED) and trained once, every
      epoch's 1 - val/acc stored in tabular_digits_arcface.json (`--tabulate digits_arcface`);
      a configuration is answered with its nearest stored one's curve; f* and f_worst are the
      best and worst final loss in the table.

Score: normalised regret of the best loss seen *at the full fidelity* so far, (best - f*) /
(f_worst - f*); 1.0 until a method has finished one config at full fidelity; below 0 on a training
problem when a method beats its reference. Read at 10, 25, 50 and 100 full-budget equivalents;
median [IQR] over seeds. Same trial cap for all.

    make bench-install        # pip install -e '.[bench]' and mf-prior-bench --no-deps
    python benchmarks/peers.py --problems mfh3_good,mfh3_bad --seeds 20 --budget 100
    python benchmarks/peers.py --table peers.csv more.csv      # the table of earlier runs together
                                                               # (more.csv's rows replace peers.csv's of the same run)
    python benchmarks/peers.py --table peers.csv --ablation    # tunelab against its own variants instead
    python benchmarks/peers.py --tabulate digits_arcface --configs 400   # train and store the table (about an hour)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # replayed.py, beside this script

CHECKPOINTS = (10, 25, 50, 100)
SYNTHETIC = ("mfh3_good", "mfh3_bad", "mfh6_good", "mfh6_bad")
HELD_OUT = ("mfh3_moderate", "mfh3_terrible", "mfh6_moderate", "mfh6_terrible", "digits_arcface")  # no default chosen on these
PROBLEMS = SYNTHETIC + ("digits_classifier", "digits_adarand")
TABULAR = {"digits_arcface": "tabular_digits_arcface.json"}  # replayed from a stored table (benchmarks/replayed.py)
METHODS = ("tunelab", "ray_optuna", "optuna", "st_asha", "st_bohb", "st_ashacqr", "random")


# ----------------------------------------------------------------------------- problems

class Problem:
    """A search problem: a space of search_spaces entries, and `run(config, on_step)` that reports
    the loss to minimise at steps 1..max_steps to `on_step(step, loss)`, stopping when it returns False."""

    name: str
    space: dict
    max_steps: int
    optimum: float  # the loss regret is measured from
    worst: float  # the loss a regret of 1 stands for

    def run(self, config: dict[str, Any], on_step: Callable[[int, float], bool]) -> None:
        raise NotImplementedError

    def regret(self, value: float) -> float:
        return (value - self.optimum) / (self.worst - self.optimum)


class Hartmann(Problem):
    """One mf-prior-bench function (its own preset, e.g. mfh3_good); its fidelity z runs 1..100 and
    step t = 1..27 evaluates z = 1 + 99 (t - 1) / 26, rounded."""

    max_steps = 27

    def __init__(self, name: str):
        import mfpbench

        from tunelab.search_spaces import FloatRange

        self.name = name
        self.bench = mfpbench.get(name, seed=0)
        self.dims = int(name[3])
        self.space = {f"X_{i}": FloatRange(0.0, 1.0) for i in range(self.dims)}
        self.optimum = self.value(dict(self.bench.optimum), self.max_steps)  # its global minimum, noise-free
        rng = np.random.default_rng(12345)
        self.worst = max(self.value({f"X_{i}": float(x) for i, x in enumerate(row)}, self.max_steps)
                         for row in rng.random((2048, self.dims)))

    def fidelity(self, step: int) -> int:
        return int(round(1 + 99 * (step - 1) / (self.max_steps - 1)))

    def value(self, config: dict[str, float], step: int) -> float:
        point = {f"X_{i}": float(config[f"X_{i}"]) for i in range(self.dims)}
        return float(self.bench.query(point, at=self.fidelity(step)).error)

    def run(self, config, on_step) -> None:
        for step in range(1, self.max_steps + 1):
            if not on_step(step, self.value(config, step)):
                return


class _StopTraining(Exception):
    pass


@contextlib.contextmanager
def _global_random_state_kept():
    """Train in this process without moving Python's and numpy's global generators.

    Training seeds them (engine.seed_everything, seed 0 for every trial here), and Syne Tune 0.16
    draws its random configurations from np.random (RandomSearcher ignores its random_seed): left
    alone, ASHA and BOHB suggested the same configuration after every trial. With their own
    backends trials run in other processes and never touch the searcher's generators.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class Training(Problem):
    """A tunelab method trained for real, one epoch per step, with its own search space; the loss
    is 1 - val/acc. Regret is measured from a stored reference optimum (the best val/acc of a large
    random search at full budget, `peers.py reference`) to chance level."""

    def __init__(self, name: str, method: str, fixed: list[str], max_steps: int, reference: Path):
        from tunelab.search_spaces import SPACES

        self.name, self.method, self.fixed, self.max_steps = name, method, list(fixed), max_steps
        self.space = SPACES[method]
        self.reference = reference
        self.optimum = 1.0 - json.loads(reference.read_text())["val_acc"] if reference.exists() else 0.0
        self._data = None

    def __getstate__(self):  # the data is loaded again in each Ray worker, not pickled
        return {**self.__dict__, "_data": None}

    def build(self, config: dict[str, Any]):
        from tunelab.trainables import get_method
        from tunelab.trainables.config import build_config, parse_set_options
        from tunelab.trainables.data import load_dataset

        method = get_method(self.method)
        values = {**parse_set_options(self.fixed), "epochs": self.max_steps, "seed": 0, "device": "cpu", "threads": 1}
        train_config = build_config(method.config_class, {**values, **config})
        if self._data is None:
            self._data = load_dataset(train_config.data_options())
        self.worst = 1.0 - 1.0 / len(self._data.class_names)
        return method, train_config

    def run(self, config, on_step) -> None:
        from tunelab.core import metrics as M
        from tunelab.trainables.engine import train
        from tunelab.trainables.reporting import LocalReporter

        with _global_random_state_kept():  # building may import modules that draw from them
            method, train_config = self.build(config)

        class Steps(LocalReporter):
            def report(self, metrics, state):
                loss = 1.0 - metrics[M.VAL_ACC] if math.isfinite(metrics[M.VAL_ACC]) else 1.0
                if not on_step(int(metrics[M.EPOCH]), loss):
                    raise _StopTraining

        try:
            with _global_random_state_kept():
                train(method, train_config, Steps(None, {}, quiet=True), data=self._data)
        except _StopTraining:
            pass

    def regret(self, value: float) -> float:
        if not hasattr(self, "worst"):
            self.build({})
        return super().regret(value)


HERE = Path(__file__).resolve().parent


def digits_classifier() -> Training:
    """The search-efficiency problem: the classifier's space on 8 px digits, width 8, 27 epochs;
    its reference optimum is benchmarks/search_efficiency_reference.json (128 random trials)."""
    reference = HERE / "search_efficiency_reference.json"
    return Training("digits_classifier", "classifier", json.loads(reference.read_text())["fixed"], 27, reference)


def digits_adarand() -> Training:
    """AdaRand fine-tuning of the offline backbone on 8 px digits, 50 images per class, 9 epochs:
    AdaRand's space (lr, weight_decay, fc_lr_factor, reg_lambda, rand_lr, alpha, prior_variant)."""
    return Training("digits_adarand", "adarand", ["image_size=8", "train_per_class=50", "val_fraction=0.3"], 9,
                    HERE / "peers_reference_adarand.json")


ARCFACE_FIXED = ["image_size=8", "width=8", "val_fraction=0.3"]
TABLE_SEED = 2026  # the draws of a tabular problem's stored configurations (no search uses this seed)


def digits_arcface_training() -> Training:
    """ArcFace / CosFace / NormSoftmax on 8 px digits (a width-8 ResNet-18), 27 epochs, its own
    space (head, s, m, easy_margin, n_feats, lr, weight_decay, head_lr_factor): what the tabular
    problem digits_arcface replays. No default was chosen on it."""
    return Training("digits_arcface", "arcface", ARCFACE_FIXED, 27, HERE / "no_reference_replayed_instead.json")


def get_problem(name: str) -> Problem:
    if name in TABULAR:
        from replayed import Replayed

        return Replayed(name, HERE / TABULAR[name])
    return {"digits_classifier": digits_classifier, "digits_adarand": digits_adarand}.get(name, lambda: Hartmann(name))()


def tabulate(name: str, configs: int) -> None:
    """Train `configs` random configurations of a tabular problem once and store their curves."""
    from replayed import tabulate as train_and_store

    problem = digits_arcface_training()
    suggest = random_suggest(np.random.default_rng(TABLE_SEED))
    about = {"problem": name, "method": problem.method, "fixed": problem.fixed, "training_seed": 0,
             "loss": "1 - val/acc", "sampled": f"uniform over the space (log-uniform on log ranges), "
             f"define-by-run, numpy default_rng({TABLE_SEED})", "threads": 1}
    train_and_store(problem, lambda: sample_define_by_run(problem.space, suggest), configs, HERE / TABULAR[name], about)


class Log:
    """The evaluations of one run, in order; stops the run once the budget is spent."""

    def __init__(self, problem: Problem, budget_steps: int):
        self.problem, self.budget_steps = problem, budget_steps
        self.steps: list[tuple[int, float]] = []  # (step within its trial, value)

    @property
    def spent(self) -> bool:
        return len(self.steps) >= self.budget_steps

    def record(self, step: int, value: float) -> None:
        self.steps.append((step, value))

    def regret_at(self, full_budgets: float) -> float:
        """Normalised regret of the best full-fidelity value within the first `full_budgets` x max_steps steps."""
        top = self.problem.max_steps
        seen = [v for s, v in self.steps[: int(full_budgets * top)] if s == top]
        return self.problem.regret(min(seen)) if seen else 1.0


# ----------------------------------------------------------------------------- spaces, as each peer takes them

def sample_define_by_run(space: dict, suggest: Callable[[str, Any], Any]) -> dict[str, Any]:
    """A config from `space`, conditional entries only where they apply, in the order and under the
    names tunelab.searcher.DefineByRun uses with an Optuna trial; `suggest(name, entry)` draws one
    value (random search, which has no trial)."""
    from tunelab.search_spaces.base import Conditional

    config = {name: suggest(name, p) for name, p in space.items() if not isinstance(p, Conditional)}
    for name, entry in space.items():
        if isinstance(entry, Conditional) and (case := entry.case(config[entry.parent])) is not None:
            config[name] = suggest(f"{name}|{entry.parent}={config[entry.parent]}", case)
    return config


def flattened(space: dict) -> dict:
    """The space a searcher without conditions is given: each conditional entry as one range
    covering all of its cases, or one choice of all their options (the union a user would write);
    ignored where it does not apply."""
    from tunelab.search_spaces import Choice, FloatRange
    from tunelab.search_spaces.base import Conditional

    flat = {}
    for name, entry in space.items():
        if isinstance(entry, Conditional):
            cases = [case for _, case in entry.cases if case is not None]
            if all(isinstance(case, Choice) for case in cases):
                entry = Choice(tuple(dict.fromkeys(option for case in cases for option in case.options)))
            else:
                entry = FloatRange(min(c.low for c in cases), max(c.high for c in cases),
                                   log=any(c.log for c in cases))
        flat[name] = entry
    return flat


def applicable(space: dict, config: dict[str, Any]) -> dict[str, Any]:
    """`config` without the conditional entries that do not apply under its choices."""
    from tunelab.search_spaces.base import Conditional

    return {name: value for name, value in config.items()
            if not (isinstance(space.get(name), Conditional) and space[name].case(config[space[name].parent]) is None)}


def ray_domain(p):
    from ray import tune

    from tunelab.search_spaces import Choice, IntRange

    if isinstance(p, Choice):
        return tune.choice(list(p.options))
    if isinstance(p, IntRange):
        return tune.lograndint(p.low, p.high + 1) if p.log else tune.randint(p.low, p.high + 1)
    return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)


def syne_tune_domain(p):
    from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

    from tunelab.search_spaces import Choice, IntRange

    if isinstance(p, Choice):
        return choice(list(p.options))
    if isinstance(p, IntRange):
        return lograndint(p.low, p.high) if p.log else randint(p.low, p.high)
    return loguniform(p.low, p.high) if p.log else uniform(p.low, p.high)


def random_suggest(rng: np.random.Generator):
    from tunelab.search_spaces import Choice, IntRange

    def suggest(name, p):
        if isinstance(p, Choice):
            return p.options[int(rng.integers(len(p.options)))]
        if p.log:
            value = math.exp(rng.uniform(math.log(p.low), math.log(p.high + (1 if isinstance(p, IntRange) else 0))))
        else:
            value = rng.uniform(p.low, p.high + (1 if isinstance(p, IntRange) else 0))
        return min(int(value), p.high) if isinstance(p, IntRange) else float(value)

    return suggest


# ----------------------------------------------------------------------------- methods

def run_tunelab(log: Log, seed: int, cap: int, **options) -> None:
    from tunelab.search import make_search

    searcher, scheduler = make_search(log.problem.space, "loss", "min", max_t=log.problem.max_steps, seed=seed,
                                      num_samples=cap, **options)
    _ray_tuner(log, searcher, scheduler, {}, cap)


def run_ray_optuna(log: Log, seed: int, cap: int) -> None:
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
    scheduler = ASHAScheduler(max_t=log.problem.max_steps, grace_period=1, reduction_factor=3)
    space = flattened(log.problem.space)
    _ray_tuner(log, searcher, scheduler, {name: ray_domain(p) for name, p in space.items()}, cap)


def run_ray_optuna_4b(log: Log, seed: int, cap: int) -> None:
    """Ray's stock OptunaSearch (TPE at Optuna's defaults, seeded) given the conditional space
    define-by-run as tunelab samples it, under tunelab's own scheduler (4 Hyperband-allocated ASHA
    brackets, the same seed): against `tunelab` only the searcher differs."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from tunelab.search import make_search
    from tunelab.searcher import DefineByRun

    _, scheduler = make_search(log.problem.space, "loss", "min", max_t=log.problem.max_steps, seed=seed,
                               num_samples=cap)
    searcher = OptunaSearch(space=DefineByRun(log.problem.space), metric="loss", mode="min",
                            sampler=optuna.samplers.TPESampler(seed=seed))
    _ray_tuner(log, searcher, scheduler, {}, cap)


def _ray_tuner(log: Log, searcher, scheduler, param_space: dict, cap: int) -> None:
    """One trial at a time (as every other method); the run ends when the budget is spent. Every
    reported step is logged by a driver callback in the order Ray delivers results (one trial at a
    time, so in evaluation order); steps past the budget are dropped, as for the other methods."""
    import ray
    from ray import tune
    from ray.tune import Callback, Stopper

    if not ray.is_initialized():  # started by the first Ray method only: the others run without it
        ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)

    problem = log.problem

    def trainable(config):
        problem.run(applicable(problem.space, config),
                    lambda step, loss: tune.report({"loss": loss, "step": step}) or True)

    class Record(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            log.record(int(result["step"]), float(result["loss"]))

    class Budget(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return log.spent

    tuner = tune.Tuner(trainable, param_space=param_space,
                       tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, metric="loss", mode="min",
                                                   num_samples=cap, max_concurrent_trials=1, reuse_actors=True),
                       run_config=tune.RunConfig(stop=Budget(), callbacks=[Record()], verbose=0,
                                                 storage_path=_scratch(), checkpoint_config=None))
    tuner.fit()
    del log.steps[log.budget_steps:]


def run_optuna(log: Log, seed: int, cap: int, group: bool = False) -> None:
    """Optuna alone: TPE at the installed Optuna's defaults (from Optuna 5.0 multivariate for one
    objective; univariate before), or with `group` (multivariate, one joint model per set of
    parameters sampled together: a conditional space's branches; the same as the default where the
    space has no conditional entry)."""
    import optuna

    from tunelab.searcher import DefineByRun  # the conditional space sampled as tunelab does, Optuna's native form

    sample = DefineByRun(log.problem.space)
    top = log.problem.max_steps
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna's Hyperband pruner puts a trial in a bracket by a hash of the study's name and the trial
    # number; an unnamed study gets a random name, so the seed alone would not fix the run.
    study = optuna.create_study(study_name=f"peers-{log.problem.name}-seed{seed}", direction="minimize",
                                sampler=optuna.samplers.TPESampler(
                                    seed=seed, **({"multivariate": True, "group": True} if group else {})),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=top,
                                                                      reduction_factor=3))

    def objective(trial):
        config = sample(trial)
        last = {"loss": math.inf, "pruned": False}

        def on_step(step, loss):
            if log.spent:
                last["pruned"] = True
                study.stop()
                return False
            log.record(step, loss)
            last["loss"] = loss
            trial.report(loss, step)
            last["pruned"] = trial.should_prune()
            return not last["pruned"]

        log.problem.run(config, on_step)
        if last["pruned"]:
            raise optuna.TrialPruned()
        return last["loss"]

    study.optimize(objective, n_trials=cap, callbacks=[lambda s, t: s.stop() if log.spent else None])


def run_syne_tune(kind: str, brackets: int = 1) -> Callable[[Log, int, int], None]:
    def run(log: Log, seed: int, cap: int) -> None:
        from datetime import datetime

        from syne_tune.backend.trial_status import Trial
        from syne_tune.optimizer import baselines
        from syne_tune.optimizer.scheduler import SchedulerDecision

        # Syne Tune 0.16 draws from numpy's global generator besides the one its random_seed
        # seeds (RandomSearcher samples with np.random; ASHACQR's train_test_split and quantile
        # sampler take no random_state), so random_seed alone does not make a run repeatable.
        np.random.seed(seed)
        problem = log.problem
        space = {name: syne_tune_domain(p) for name, p in flattened(problem.space).items()}
        scheduler_class = {"st_asha": baselines.ASHA, "st_bohb": baselines.BOHB, "st_ashacqr": baselines.ASHACQR}[kind]
        scheduler = scheduler_class(space, metric="loss", time_attr="epoch", max_t=problem.max_steps, do_minimize=True,
                                    random_seed=seed, grace_period=1, reduction_factor=3, brackets=brackets)
        for trial_id in range(cap):
            if log.spent:
                break
            suggestion = scheduler.suggest()
            if suggestion is None:
                break
            trial = Trial(trial_id=trial_id, config=suggestion.config, creation_time=datetime.now())
            scheduler.on_trial_add(trial)
            last: dict[str, Any] = {}

            def on_step(step, loss, trial=trial, last=last):
                if log.spent:
                    return False
                log.record(step, loss)
                last.update(epoch=step, loss=loss)
                return scheduler.on_trial_result(trial, {"epoch": step, "loss": loss}) == SchedulerDecision.CONTINUE

            problem.run(applicable(problem.space, suggestion.config), on_step)
            if last:
                scheduler.on_trial_complete(trial, dict(last))

    return run


def run_random(log: Log, seed: int, cap: int) -> None:
    suggest = random_suggest(np.random.default_rng(seed))
    for _ in range(cap):
        if log.spent:
            return
        config = sample_define_by_run(log.problem.space, suggest)
        log.problem.run(config, lambda step, loss: not log.spent and (log.record(step, loss) or True))


RUNNERS: dict[str, Callable[[Log, int, int], None]] = {
    "tunelab": run_tunelab,
    "tunelab_before": lambda log, seed, cap: run_tunelab(log, seed, cap, brackets=1, rank_at_rung=False),
    "tunelab_1bracket": lambda log, seed, cap: run_tunelab(log, seed, cap, brackets=1),
    "tunelab_norank": lambda log, seed, cap: run_tunelab(log, seed, cap, rank_at_rung=False),
    "ray_optuna": run_ray_optuna, "ray_optuna_4b": run_ray_optuna_4b,
    "optuna": run_optuna, "optuna_group": lambda log, seed, cap: run_optuna(log, seed, cap, group=True),
    "st_asha": run_syne_tune("st_asha"), "st_bohb": run_syne_tune("st_bohb"), "st_ashacqr": run_syne_tune("st_ashacqr"),
    "st_asha_4b": run_syne_tune("st_asha", 4), "st_bohb_4b": run_syne_tune("st_bohb", 4),
    "st_ashacqr_4b": run_syne_tune("st_ashacqr", 4), "random": run_random}


_SCRATCH: list = []


def _scratch() -> str:
    import tempfile

    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryDirectory(prefix="peers-"))
    return _SCRATCH[0].name


# ----------------------------------------------------------------------------- the table

RUN_KEY = ["problem", "method", "seed", "checkpoint"]  # one row of an --out file per run and checkpoint


def read_rows(path: str, parser: argparse.ArgumentParser) -> pd.DataFrame:
    """One earlier --out file, or exit 2 with one line naming it (and the file line at fault).

    Read with the csv module, every cell a string until checked: pandas' reader would take a row
    with an extra field as an index (shifting every column), skip blank lines (shifting the line
    numbers) and read problem names `1` and `1.0` as one number."""
    import csv

    def refuse(what: str) -> None:
        parser.exit(2, f"peers.py: --table {path!r} {what}\n")

    header, records, lines = None, [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            for fields in reader:
                if not fields:
                    continue  # a blank line
                if len(fields) != len(header):
                    refuse(f"line {reader.line_num}: {len(fields)} fields, the header has {len(header)}")
                records.append(fields)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        refuse(f"cannot be read as CSV ({type(error).__name__})")
    if header is None:
        refuse("cannot be read as CSV (the file is empty)")
    missing = [column for column in RUN_KEY + ["regret"] if column not in header]
    if missing:
        refuse(f"is not a peers.py --out file: no column {', '.join(missing)}")
    if not records:
        refuse("has a header and no rows")
    rows = pd.DataFrame(records, columns=header)
    problem = checked_rows(rows, lines)
    if problem is not None:
        refuse(problem)
    return rows


EFFORT = ["trials", "full_budget_trials", "steps"]  # optional columns (files before them have none)
REGRET_BOUND = 1e6  # a normalised regret is about 0..1; within this, differences of two stay finite


def checked_rows(rows: pd.DataFrame, lines: list[int]) -> str | None:
    """What makes `rows` (strings, read by `read_rows`; `lines`: each row's line in the file) unfit
    for the table (the first bad value, by its line), or None. Numeric columns are made numbers in
    place. A row left out quietly (a blank method, a NaN regret) would change a verdict without a
    word, so none is."""
    for column in ("problem", "method"):
        blank = rows[column].str.strip() == ""
        if blank.any():
            return f"line {lines[int(np.argmax(blank))]}: no {column}"
    for column in ["seed", "checkpoint", "regret"] + [c for c in EFFORT if c in rows]:
        empty = rows[column].str.strip() == ""
        numbers = pd.to_numeric(rows[column].where(~empty), errors="coerce")
        bad = ~np.isfinite(numbers) & ~(empty if column in EFFORT else False)
        if column == "regret":
            bad |= numbers.abs() > REGRET_BOUND
        if column in EFFORT:
            bad |= numbers < 0
        if bad.any():
            index = int(np.argmax(bad))
            value = rows[column].iloc[index]
            return (f"line {lines[index]}: {column} "
                    + ("is empty" if not value.strip() else f"{value!r} is not " + _allowed(column)))
        rows[column] = numbers
    return None


def _allowed(column: str) -> str:
    if column == "regret":
        return f"a finite number within +-{REGRET_BOUND:g}"
    return "a count >= 0" if column in EFFORT else "a finite number"


def latest_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in file order, a rerun's row replacing the earlier one of its problem, method, seed and
    checkpoint (so a corrected rerun can be listed after the stored files it corrects)."""
    latest = rows.drop_duplicates(RUN_KEY, keep="last")
    if len(latest) < len(rows):
        print(f"{len(rows) - len(latest)} rows replaced by a later file's rows of the same {', '.join(RUN_KEY)}\n")
    return latest


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """problem x method x checkpoint: 'median [q1, q3]' of the normalised regret."""
    def cell(values: pd.Series) -> str:
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return f"{median:.3f} [{q1:.3f}, {q3:.3f}]"

    return rows.groupby(["problem", "method", "checkpoint"])["regret"].apply(cell).unstack("checkpoint")


def effort(rows: pd.DataFrame) -> pd.DataFrame:
    """problem x method, at each run's last checkpoint: median trials started, trials that reached
    the full budget, and steps per trial (epochs per trial on a training problem)."""
    rows = rows.dropna(subset=EFFORT)
    last = rows[rows.checkpoint == rows.groupby(["problem", "method", "seed"]).checkpoint.transform("max")]
    last = last.assign(steps_per_trial=(last.steps / last.trials).where(last.trials > 0))
    return last.groupby(["problem", "method"])[["trials", "full_budget_trials", "steps_per_trial"]].median()


ALPHA = 0.05  # the verdict rule, fixed before any run: family-wise over the peers of one cell
BOOTSTRAP = 4000  # resamples of the paired seeds for the interval of the median difference


def paired(group: pd.DataFrame, mine: str, peer: str) -> np.ndarray:
    """Regret of `mine` minus the peer's, seed by seed (the seeds both ran); negative: `mine` better."""
    by_seed = group.pivot_table(index="seed", columns="method", values="regret")[[mine, peer]].dropna()
    return (by_seed[mine] - by_seed[peer]).to_numpy()


def signed_rank_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p over the non-zero differences (1.0 when none differ)."""
    from scipy.stats import wilcoxon

    if not np.any(differences != 0):
        return 1.0
    return float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)


def better_side(differences: np.ndarray) -> int:
    """-1 if `mine` ranks better (its signed-rank sum is negative), +1 if the peer does, 0 if even."""
    from scipy.stats import rankdata

    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return 0
    signed = np.sign(nonzero) * rankdata(np.abs(nonzero))
    return int(np.sign(signed.sum()))


def median_interval(differences: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """(median paired difference, 95% percentile-bootstrap interval) over the seeds."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(differences, size=(BOOTSTRAP, differences.size), replace=True)
    low, high = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return float(np.median(differences)), float(low), float(high)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the peers of one cell)."""
    ordered = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p_values[name]))
        adjusted[name] = running
    return adjusted


def cell_verdict(group: pd.DataFrame, mine: str, peers: list[str]) -> tuple[str, list[str]]:
    """(win | tie | loss | unjudged, one phrase per peer) for one problem and checkpoint.

    win: significantly better than every peer; loss: some peer significantly better; tie otherwise.
    Significant: Wilcoxon signed-rank paired by seed, Holm-adjusted over the cell's peers, below ALPHA.
    unjudged: some peer shares no seed with `mine`, so the cell has no paired comparison with it.
    """
    differences = {peer: paired(group, mine, peer) for peer in peers}
    unpaired = [peer for peer, d in differences.items() if d.size == 0]
    if unpaired:
        return "unjudged", [f"{peer}: no seed run by both" for peer in unpaired]
    adjusted = holm({peer: signed_rank_p(d) for peer, d in differences.items()})
    phrases, sides = [], {}
    for peer in peers:
        d = differences[peer]
        median, low, high = median_interval(d)
        sides[peer] = better_side(d) if adjusted[peer] < ALPHA else 0
        mark = {-1: "better", 1: "worse", 0: "n.s."}[sides[peer]]
        phrases.append(f"{peer} {median:+.4f} [{low:+.4f}, {high:+.4f}] Holm p {adjusted[peer]:.3g} "
                       f"n={d.size} {mark}")
    if any(side == 1 for side in sides.values()):
        return "loss", phrases
    if all(side == -1 for side in sides.values()):
        return "win", phrases
    return "tie", phrases


ABLATION = ("tunelab_norank", "tunelab_1bracket", "tunelab_before")  # tunelab with one part or both taken out


def verdicts(rows: pd.DataFrame, mine: str = "tunelab", ablation: bool = False) -> list[str]:
    """One line per problem and checkpoint: `mine` against every peer (the methods that are not
    tunelab's own variants), by the rule of `cell_verdict`, with each paired median difference of
    regret (`mine` minus peer; negative: `mine` lower) and its 95% interval; then the count.
    With `ablation`, against the ABLATION variants instead (Holm over those of the cell)."""
    lines, counts = [], {"win": 0, "tie": 0, "loss": 0, "unjudged": 0}
    family = "ablation variants" if ablation else "peers"
    for (problem, checkpoint), group in rows.groupby(["problem", "checkpoint"]):
        methods = set(group.method)
        peers = sorted(m for m in methods if (m in ABLATION if ablation else not m.startswith("tunelab")))
        if mine not in methods or not peers:
            continue
        verdict, phrases = cell_verdict(group, mine, peers)
        counts[verdict] += 1
        lines.append(f"{mine} on {problem} @ {checkpoint}: {verdict} ({'; '.join(phrases)})")
    total = counts["win"] + counts["tie"] + counts["loss"]
    unjudged = f"; {counts['unjudged']} cell(s) unjudged, left out of the count" if counts["unjudged"] else ""
    lines.append(f"{counts['win']} win, {counts['tie']} tie, {counts['loss']} loss over {total} cells "
                 f"(Wilcoxon signed-rank by seed, Holm over each cell's {family}, alpha {ALPHA}){unjudged}")
    return lines


def power(seeds: int, peers: int, effects=(0.5, 0.8, 1.0, 1.5), draws: int = 4000, seed: int = 0) -> list[str]:
    """The rule's power against one peer, by simulation: paired differences drawn normal with
    standardised effect d (mean / SD) over `seeds` seeds, the signed-rank p compared with Holm's
    first-step threshold (alpha / peers: the peer judged first) and its last (alpha)."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(seed)
    lines = []
    for d in effects:
        p = np.array([wilcoxon(rng.normal(d, 1.0, seeds)).pvalue for _ in range(draws)])
        lines.append(f"d = {d}: power {np.mean(p < ALPHA / peers):.2f} at Holm's first step (p < {ALPHA / peers:.4f}), "
                     f"{np.mean(p < ALPHA):.2f} at its last (p < {ALPHA}); {seeds} seeds, {peers} peers, {draws} draws")
    return lines


def reference(name: str, trials: int) -> None:
    """A training problem's reference optimum: the best val/acc of `trials` random configs at full
    budget (seed 12345), stored where the problem reads it."""
    problem = get_problem(name)
    log = Log(problem, trials * problem.max_steps)
    run_random(log, 12345, trials)
    final = [loss for step, loss in log.steps if step == problem.max_steps]
    best = 1.0 - min(loss for _, loss in log.steps)
    problem.reference.write_text(json.dumps({
        "val_acc": best, "trials": trials, "max_epochs": problem.max_steps, "fixed": problem.fixed,
        "search": "random, full budget, seed 12345", "median_final_val_acc": 1.0 - float(np.median(final))}, indent=2) + "\n")
    print(f"{name}: reference optimum val/acc {best:.4f} from {trials} random trials -> {problem.reference}")


KNOWN_PROBLEMS = PROBLEMS + HELD_OUT  # every name get_problem makes (the Hartmann presets of mf-prior-bench)


def check_run_arguments(args, parser: argparse.ArgumentParser) -> None:
    """Before any run: every name known, every count positive, --out new and writable; else exit 2."""
    for flag, names, known in (("--problems", args.problems, KNOWN_PROBLEMS), ("--methods", args.methods, RUNNERS)):
        for name in names.split(","):
            if name not in known:
                parser.exit(2, f"peers.py: {flag} {name!r} is not known; choose from: {', '.join(known)}\n")
    for flag, value in (("--seeds", args.seeds), ("--budget", args.budget), ("--cap", args.cap)):
        if value < 1:
            parser.exit(2, f"peers.py: {flag} {value} must be at least 1\n")
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        parser.exit(2, f"peers.py: --out {args.out} exists (an earlier run's rows); give another file name\n")
    if not out.parent.is_dir():
        parser.exit(2, f"peers.py: --out {args.out}: no folder {str(out.parent)!r} to write it in\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--budget", type=int, default=100, help="full-budget equivalents per run")
    parser.add_argument("--cap", type=int, default=400, help="trial cap, the same for every method")
    parser.add_argument("--out", default="peers.csv", help="every run's regret at every checkpoint")
    parser.add_argument("--table", nargs="+", metavar="CSV",
                        help="no runs: the table and verdicts of earlier --out files (a later file's rows replace an "
                             "earlier one's for the same problem, method, seed and checkpoint)")
    parser.add_argument("--ablation", action="store_true",
                        help="with --table: tunelab against its variants with a part taken out (" + ", ".join(ABLATION)
                             + "), not against the peers")
    parser.add_argument("--reference", metavar="PROBLEM", help="no runs: store a training problem's reference optimum")
    parser.add_argument("--trials", type=int, default=128, help="random trials for --reference")
    parser.add_argument("--tabulate", metavar="PROBLEM", help="no runs: train and store a tabular problem's curves")
    parser.add_argument("--configs", type=int, default=400, help="configurations for --tabulate")
    parser.add_argument("--power", nargs=2, type=int, metavar=("SEEDS", "PEERS"),
                        help="no runs: the verdict rule's power against one peer, by simulation")
    args = parser.parse_args()
    if args.power:
        print("\n".join(power(*args.power)))
        return
    if args.ablation and not args.table:
        parser.exit(2, "peers.py: --ablation judges stored rows: give it with --table CSV...\n")
    if args.table:
        table = latest_rows(pd.concat([read_rows(path, parser) for path in args.table], ignore_index=True))
        print(summarise(table).to_string())
        if set(EFFORT) <= set(table):
            print("\nmedian per run at its last checkpoint:\n" + effort(table).round(1).to_string())
        lines = verdicts(table, ablation=args.ablation)
        if args.ablation and len(lines) == 1:  # the count line only: nothing was judged
            parser.exit(2, "peers.py: --table: no problem and checkpoint has rows of tunelab and of one of its "
                           f"variants ({', '.join(ABLATION)})\n")
        print("\n" + "\n".join(lines))
        return
    if args.reference is not None:
        if args.reference not in ("digits_classifier", "digits_adarand"):
            parser.exit(2, f"peers.py: --reference {args.reference!r} is not a training problem; "
                           "choose from: digits_classifier, digits_adarand\n")
        return reference(args.reference, args.trials)
    if args.tabulate is not None:
        if args.tabulate not in TABULAR:
            parser.exit(2, f"peers.py: --tabulate {args.tabulate!r} is not a tabular problem; "
                           f"choose from: {', '.join(TABULAR)}\n")
        if args.configs < 1:
            parser.exit(2, f"peers.py: --configs {args.configs} must be at least 1\n")
        from replayed import OtherTable

        try:
            return tabulate(args.tabulate, args.configs)
        except OtherTable as error:
            parser.exit(2, f"peers.py: --tabulate {args.tabulate}: {error}\n")
    check_run_arguments(args, parser)
    checkpoints = [c for c in CHECKPOINTS if c <= args.budget] or [args.budget]
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no experiment banners per run
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    rows = []
    began = time.perf_counter()
    for name in args.problems.split(","):
        problem = get_problem(name)
        for method in args.methods.split(","):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                log = Log(problem, args.budget * problem.max_steps)
                started = time.perf_counter()
                RUNNERS[method](log, seed, args.cap)
                trials = sum(step == 1 for step, _ in log.steps)
                if not log.spent and trials < args.cap:  # Ray's Tuner returns, not raises, on Ctrl-C
                    parser.exit(1, f"peers.py: {name} {method} seed {seed} ended after {len(log.steps)} of "
                                   f"{log.budget_steps} steps and {trials} of {args.cap} trials (interrupted?); "
                                   f"its rows are not written, those before it are in {args.out}\n")
                tops = sum(step == problem.max_steps for step, _ in log.steps)
                for checkpoint in checkpoints:
                    rows.append({"problem": name, "method": method, "seed": seed, "checkpoint": checkpoint,
                                 "regret": log.regret_at(checkpoint), "steps": len(log.steps),
                                 "trials": trials, "full_budget_trials": tops,
                                 "seconds": time.perf_counter() - started})
                pd.DataFrame(rows).to_csv(args.out, index=False)  # after every run: an interrupted one keeps them
            done = pd.DataFrame(rows)
            mine = done[(done.problem == name) & (done.method == method)]
            print(f"{name} {method}: median regret at {checkpoints[-1]} "
                  f"{mine[mine.checkpoint == checkpoints[-1]].regret.median():.3f}, "
                  f"{mine.seconds.mean():.1f} s per run", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    print(f"\n{platform.machine()}, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}, budget {args.budget} "
          f"full-budget equivalents, cap {args.cap} trials, {time.perf_counter() - began:.0f} s; "
          "normalised regret median [IQR]:")
    print(summarise(table).to_string())
    print("\n" + "\n".join(verdicts(table)))


if __name__ == "__main__":
    main()
