"""tunelab's search against the searchers a user would pick instead, side by side, same budget.

Methods (every one evaluates one config-step at a time, so "budget" is the same for all: steps of
fidelity, counted in full-budget equivalents = steps / MAX_STEPS):

    tunelab        tunelab.search.make_search (TPE + ASHA) inside a ray.tune.Tuner
    tunelab_b3     the same with ASHA in 3 Hyperband brackets (make_search(..., brackets=3))
    ray_optuna     Ray Tune's stock OptunaSearch (TPE, seeded) + ASHAScheduler
    optuna         Optuna alone, in-process: TPESampler + HyperbandPruner
    st_asha        Syne Tune ASHA          (its ask/tell API, in-process)
    st_bohb        Syne Tune BOHB
    st_ashacqr     Syne Tune ASHACQR       (conformal quantile regression + ASHA)
    random         random search, every trial at the full budget

Problems: mf-prior-bench's multi-fidelity Hartmann functions, its own presets `mfh3_good`,
`mfh3_bad`, `mfh6_good`, `mfh6_bad` (3 or 6 dimensions; a well or a badly correlated fidelity).
Their fidelity z runs 1..100; here a trial's step t = 1..MAX_STEPS (27: ASHA rungs 1, 3, 9, 27)
evaluates z = 1 + 99 (t - 1) / (MAX_STEPS - 1), rounded.

Score: normalised regret of the best value seen *at the full fidelity* so far, (best - f*) /
(f_worst - f*), with f* the value at the function's known global minimum (mf-prior-bench's
`optimum`) and f_worst the worst of 2048 seeded
uniform configs at full fidelity (1.0 until a method has finished one config at full fidelity).
Read at 10, 25, 50 and 100 full-budget equivalents; median [IQR] over seeds. Same trial cap for all.

    pip install -e '.[bench]' && pip install --no-deps mf-prior-bench==1.10.0
    python benchmarks/peers.py --seeds 10 --budget 100
    python benchmarks/peers.py --table peers.csv more.csv      # the table of earlier runs together
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_STEPS = 27
CHECKPOINTS = (10, 25, 50, 100)
PROBLEMS = ("mfh3_good", "mfh3_bad", "mfh6_good", "mfh6_bad")
METHODS = ("tunelab", "ray_optuna", "optuna", "st_asha", "st_bohb", "st_ashacqr", "random")


# ----------------------------------------------------------------------------- problems

class Problem:
    """One mf-prior-bench function: `value(config, step)` to minimise; records every evaluation."""

    def __init__(self, name: str):
        import mfpbench

        self.name = name
        self.bench = mfpbench.get(name, seed=0)
        self.dims = int(name[3])
        self.optimum = self.value(dict(self.bench.optimum), MAX_STEPS)  # its global minimum, noise-free
        rng = np.random.default_rng(12345)
        worst = [self.value({f"X_{i}": float(x) for i, x in enumerate(row)}, MAX_STEPS)
                 for row in rng.random((2048, self.dims))]
        self.worst = max(worst)

    def fidelity(self, step: int) -> int:
        return int(round(1 + 99 * (step - 1) / (MAX_STEPS - 1)))

    def value(self, config: dict[str, float], step: int) -> float:
        point = {f"X_{i}": float(config[f"X_{i}"]) for i in range(self.dims)}
        return float(self.bench.query(point, at=self.fidelity(step)).error)

    def regret(self, value: float) -> float:
        return (value - self.optimum) / (self.worst - self.optimum)


class Log:
    """The evaluations of one run, in order; stops the run once the budget is spent."""

    def __init__(self, problem: Problem, budget_steps: int):
        self.problem, self.budget_steps = problem, budget_steps
        self.steps: list[tuple[int, float]] = []  # (step within its trial, value)

    @property
    def spent(self) -> bool:
        return len(self.steps) >= self.budget_steps

    def evaluate(self, config: dict[str, float], step: int) -> float:
        value = self.problem.value(config, step)
        self.steps.append((step, value))
        return value

    def regret_at(self, full_budgets: float) -> float:
        """Normalised regret of the best full-fidelity value within the first `full_budgets` x MAX_STEPS steps."""
        seen = [v for s, v in self.steps[: int(full_budgets * MAX_STEPS)] if s == MAX_STEPS]
        return self.problem.regret(min(seen)) if seen else 1.0


# ----------------------------------------------------------------------------- methods

def run_tunelab(log: Log, seed: int, cap: int, brackets: int = 1) -> None:
    from search_spaces import FloatRange
    from tunelab.search import make_search

    space = {f"X_{i}": FloatRange(0.0, 1.0) for i in range(log.problem.dims)}
    searcher, scheduler = make_search(space, "loss", "min", max_t=MAX_STEPS, seed=seed, num_samples=cap,
                                      brackets=brackets)
    _ray_tuner(log, searcher, scheduler, {}, cap)


def run_ray_optuna(log: Log, seed: int, cap: int) -> None:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
    scheduler = ASHAScheduler(max_t=MAX_STEPS, grace_period=1, reduction_factor=3)
    _ray_tuner(log, searcher, scheduler, {f"X_{i}": tune.uniform(0.0, 1.0) for i in range(log.problem.dims)}, cap)


def _ray_tuner(log: Log, searcher, scheduler, param_space: dict, cap: int) -> None:
    """One trial at a time (as every other method); the run ends when the budget is spent. Every
    reported step is logged by a driver callback in the order Ray delivers results (one trial at a
    time, so in evaluation order); steps past the budget are dropped, as for the other methods."""
    from ray import tune
    from ray.tune import Callback, Stopper

    problem = log.problem

    def trainable(config):
        for step in range(1, MAX_STEPS + 1):
            tune.report({"loss": problem.value(config, step), "step": step})

    class Record(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            log.steps.append((int(result["step"]), float(result["loss"])))

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


def run_optuna(log: Log, seed: int, cap: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_STEPS,
                                                                      reduction_factor=3))

    def objective(trial):
        config = {f"X_{i}": trial.suggest_float(f"X_{i}", 0.0, 1.0) for i in range(log.problem.dims)}
        value = math.inf
        for step in range(1, MAX_STEPS + 1):
            if log.spent:
                study.stop()
                raise optuna.TrialPruned()
            value = log.evaluate(config, step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=cap, callbacks=[lambda s, t: s.stop() if log.spent else None])


def run_syne_tune(kind: str) -> Callable[[Log, int, int], None]:
    def run(log: Log, seed: int, cap: int) -> None:
        from datetime import datetime

        from syne_tune.backend.trial_status import Trial
        from syne_tune.config_space import uniform
        from syne_tune.optimizer import baselines
        from syne_tune.optimizer.scheduler import SchedulerDecision

        space = {f"X_{i}": uniform(0.0, 1.0) for i in range(log.problem.dims)}
        scheduler_class = {"st_asha": baselines.ASHA, "st_bohb": baselines.BOHB, "st_ashacqr": baselines.ASHACQR}[kind]
        scheduler = scheduler_class(space, metric="loss", time_attr="epoch", max_t=MAX_STEPS, do_minimize=True,
                                    random_seed=seed, grace_period=1, reduction_factor=3)
        for trial_id in range(cap):
            if log.spent:
                break
            suggestion = scheduler.suggest()
            if suggestion is None:
                break
            config = suggestion.config
            trial = Trial(trial_id=trial_id, config=config, creation_time=datetime.now())
            scheduler.on_trial_add(trial)
            for step in range(1, MAX_STEPS + 1):
                if log.spent:
                    break
                value = log.evaluate(config, step)
                decision = scheduler.on_trial_result(trial, {"epoch": step, "loss": value})
                if decision != SchedulerDecision.CONTINUE:
                    break
            scheduler.on_trial_complete(trial, {"epoch": step, "loss": value})

    return run


def run_random(log: Log, seed: int, cap: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(cap):
        config = {f"X_{i}": float(x) for i, x in enumerate(rng.random(log.problem.dims))}
        for step in range(1, MAX_STEPS + 1):
            if log.spent:
                return
            log.evaluate(config, step)


RUNNERS: dict[str, Callable[[Log, int, int], None]] = {
    "tunelab": run_tunelab, "tunelab_b3": lambda log, seed, cap: run_tunelab(log, seed, cap, brackets=3), "ray_optuna": run_ray_optuna, "optuna": run_optuna, "st_asha": run_syne_tune("st_asha"),
    "st_bohb": run_syne_tune("st_bohb"), "st_ashacqr": run_syne_tune("st_ashacqr"), "random": run_random}


_SCRATCH: list = []


def _scratch() -> str:
    import tempfile

    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryDirectory(prefix="peers-"))
    return _SCRATCH[0].name


# ----------------------------------------------------------------------------- the table

def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """problem x method x checkpoint: 'median [q1, q3]' of the normalised regret."""
    def cell(values: pd.Series) -> str:
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return f"{median:.3f} [{q1:.3f}, {q3:.3f}]"

    return rows.groupby(["problem", "method", "checkpoint"])["regret"].apply(cell).unstack("checkpoint")


def verdicts(rows: pd.DataFrame, mine: str = "tunelab") -> list[str]:
    """Per problem and checkpoint: `mine` best (lowest median), tied (its IQR overlaps the best
    peer's) or behind; peers are the methods that are not tunelab's own variants."""
    lines = []
    for (problem, checkpoint), group in rows.groupby(["problem", "checkpoint"]):
        stats = group.groupby("method")["regret"].quantile([0.25, 0.5, 0.75]).unstack()
        if mine not in stats.index:
            continue
        peers = stats.loc[[m for m in stats.index if not m.startswith("tunelab")]]
        if peers.empty:
            continue
        best = peers[0.5].idxmin()
        q1, median, q3 = stats.loc[mine]
        if median <= peers.loc[best, 0.5]:
            verdict = f"best (median {median:.3f}; best peer {best} {peers.loc[best, 0.5]:.3f})"
        elif q1 <= peers.loc[best, 0.75] and peers.loc[best, 0.25] <= q3:
            verdict = f"tied with {best} (median {median:.3f} vs {peers.loc[best, 0.5]:.3f}, IQRs overlap)"
        else:
            verdict = f"behind {best} (median {median:.3f} vs {peers.loc[best, 0.5]:.3f}, IQRs apart)"
        lines.append(f"{mine} on {problem} @ {checkpoint}: {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100, help="full-budget equivalents per run")
    parser.add_argument("--cap", type=int, default=400, help="trial cap, the same for every method")
    parser.add_argument("--out", default="peers.csv", help="every run's regret at every checkpoint")
    parser.add_argument("--table", nargs="+", metavar="CSV", help="no runs: the table and verdicts of earlier --out files")
    args = parser.parse_args()
    if args.table:
        table = pd.concat([pd.read_csv(path) for path in args.table], ignore_index=True)
        print(summarise(table).to_string())
        print("\n" + "\n".join(verdicts(table) + verdicts(table, "tunelab_b3")))
        return
    checkpoints = [c for c in CHECKPOINTS if c <= args.budget]
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no experiment banners per run
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    rows = []
    began = time.perf_counter()
    for name in args.problems.split(","):
        problem = Problem(name)
        for method in args.methods.split(","):
            for seed in range(args.seeds):
                log = Log(problem, args.budget * MAX_STEPS)
                started = time.perf_counter()
                RUNNERS[method](log, seed, args.cap)
                for checkpoint in checkpoints:
                    rows.append({"problem": name, "method": method, "seed": seed, "checkpoint": checkpoint,
                                 "regret": log.regret_at(checkpoint), "steps": len(log.steps),
                                 "seconds": time.perf_counter() - started})
            done = pd.DataFrame(rows)
            done.to_csv(args.out, index=False)  # after every method: an interrupted run keeps what it measured
            mine = done[(done.problem == name) & (done.method == method)]
            print(f"{name} {method}: median regret at {checkpoints[-1]} "
                  f"{mine[mine.checkpoint == checkpoints[-1]].regret.median():.3f}, "
                  f"{mine.seconds.mean():.1f} s per run", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    print(f"\n{platform.machine()}, {args.seeds} seeds, budget {args.budget} x {MAX_STEPS} steps, "
          f"cap {args.cap} trials, {time.perf_counter() - began:.0f} s; normalised regret median [IQR]:")
    print(summarise(table).to_string())
    print("\n" + "\n".join(verdicts(table) + verdicts(table, "tunelab_b3")))


if __name__ == "__main__":
    main()
