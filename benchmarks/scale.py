"""Cluster scale, measured: what the driver spends per suggestion and per result as finished
trials accumulate, side by side for tunelab's searcher, Ray's stock OptunaSearch and random search.

    python benchmarks/scale.py driver --history 1000 3000 10000 --suggestions 20

`driver` makes, without actors, the calls Tune's driver makes (ASHA's order: scheduler, then
searcher), after prefilling H finished trials: each searcher's study gets H trials drawn at
random from its own space (Optuna's `add_trials`), with intermediate values at the rungs ASHA
would have stopped them at (tunelab's searcher records ASHA's stops as PRUNED; Ray's stock one as
COMPLETE with the last value, as it does live), and the scheduler sees their results, so its
rung cut-offs are those of H trials. Then `--suggestions` new trials are suggested and run
through the rungs (9 epochs, reduction factor 3, tunelab's 4 Hyperband brackets). Each (searcher,
H) runs in a fresh process: its peak RSS is that process's. Figures: p50 and p99 of a suggestion
and of a result (scheduler + searcher), and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEARCHERS = ("optuna", "optuna-stock", "random")
MEASURED = ("optuna", "optuna-stock")  # random: see the note in benchmarks/scale.md
MAX_T, METRIC = 9, "val/acc"


def _options(search: str, trials: int):
    from tunelab.tune_options import TuneOptions

    return TuneOptions(method="classifier", search=search, max_epochs=MAX_T, num_samples=trials, scheduler="asha",
                       seed=0)


def _curve(rng: np.random.Generator) -> tuple[list[float], int]:
    """A trial's val/acc per epoch (rising to a random plateau) and the epoch ASHA's bracket stops it at."""
    plateau = rng.uniform(0.1, 0.95)
    values = [plateau * (1 - np.exp(-(e + 1) / 3)) for e in range(MAX_T)]
    stop = rng.choice([1, 3, 9], p=[0.6, 0.25, 0.15])
    return values, int(stop)


class Stub:
    """The trial fields Ray's ASHA reads."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id
        self.status = "RUNNING"


def _prefill_study(study, ask_space, history: int, pruned_state, rng: np.random.Generator) -> None:
    import optuna

    draws = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(history):
        trial = ask_space(draws)
        values, stop = _curve(rng)
        for epoch in range(1, stop + 1):
            trial.report(values[epoch - 1], epoch)
        if pruned_state == "COMPLETE" or stop == MAX_T:
            draws.tell(trial, max(values[:stop]))
        else:
            draws.tell(trial, state=optuna.trial.TrialState.PRUNED)
    study.add_trials(draws.get_trials(deepcopy=False))


def _prefill_scheduler(scheduler, history: int, rng: np.random.Generator) -> None:
    for i in range(history):
        trial = Stub(f"prefill_{i}")
        scheduler.on_trial_add(None, trial)
        values, _ = _curve(rng)
        for epoch in range(1, MAX_T + 1):
            decision = scheduler.on_trial_result(None, trial, {METRIC: values[epoch - 1], "epoch": epoch})
            if decision == "STOP" or epoch == MAX_T:
                scheduler.on_trial_complete(None, trial, {METRIC: values[epoch - 1], "epoch": epoch})
                break


def one(search: str, history: int, suggestions: int) -> dict:
    """One searcher at one history size, in this process."""
    import optuna

    from tunelab.compat.ray import optuna_space_of, optuna_study_of
    from tunelab.search_spaces import space_for
    from tunelab.searcher_plugins import searcher_for

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = np.random.default_rng(0)
    opts = _options(search, history + suggestions)
    search_alg, param_space, scheduler = searcher_for(search).build(opts, dict(space_for("classifier")), "scale")
    scheduler.set_search_properties(METRIC, "max")
    began = time.perf_counter()
    if search == "random":
        from ray.tune.experiment import Experiment

        from tunelab.tune_options import fixed_values

        config = {**fixed_values(opts), **param_space}  # as the driver gives Ray the space
        search_alg.add_configurations([Experiment("scale", lambda config: None, config=config,
                                                  num_samples=history + suggestions, storage_path="/tmp/scale")])
        for _ in range(history):
            search_alg.next_trial()  # the history random search keeps: how many it has drawn
        suggest = lambda trial_id: search_alg.next_trial()
    else:
        search_alg.set_search_properties(METRIC, "max", {})
        study = optuna_study_of(search_alg)
        if search == "optuna":
            space = search_alg.optuna_space
            ask = lambda draws: (lambda t: (space(t), t)[1])(draws.ask())
            _prefill_study(study, ask, history, "PRUNED", rng)
        else:
            distributions = optuna_space_of(search_alg)
            ask = lambda draws: draws.ask(fixed_distributions=distributions)
            _prefill_study(study, ask, history, "COMPLETE", rng)
        suggest = search_alg.suggest
    _prefill_scheduler(scheduler, history, rng)
    prefill_s = time.perf_counter() - began
    suggest_s, result_s = [], []
    for k in range(suggestions):
        trial = Stub(f"new_{k}")
        started = time.perf_counter()
        config = suggest(trial.trial_id)
        suggest_s.append(time.perf_counter() - started)
        assert config is not None, f"{search} suggested nothing"
        if search == "random":
            trial = Stub(config.trial_id)
        scheduler.on_trial_add(None, trial)
        values, _ = _curve(rng)
        for epoch in range(1, MAX_T + 1):
            result = {METRIC: values[epoch - 1], "epoch": epoch, "training_iteration": epoch}
            started = time.perf_counter()
            decision = scheduler.on_trial_result(None, trial, result)
            ended = decision == "STOP" or epoch == MAX_T
            if search != "random":
                search_alg.on_trial_result(trial.trial_id, result)
                if ended:
                    search_alg.on_trial_complete(trial.trial_id, result)
            if ended:
                scheduler.on_trial_complete(None, trial, result)
            result_s.append(time.perf_counter() - started)
            if ended:
                break
    ms = lambda xs, q: 1000 * float(np.percentile(xs, q))
    return {"search": search, "history": history, "suggest_p50_ms": ms(suggest_s, 50),
            "suggest_p99_ms": ms(suggest_s, 99), "result_p50_ms": ms(result_s, 50), "result_p99_ms": ms(result_s, 99),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "prefill_s": prefill_s}


def driver(args) -> None:
    rows = []
    print(f"{'searcher':14} {'history':>8} {'suggest p50/p99 ms':>20} {'result p50/p99 ms':>19} {'peak RSS MB':>12}")
    for history in args.history:
        for search in args.searchers:
            done = subprocess.run([sys.executable, __file__, "_one", search, str(history), str(args.suggestions)],
                                  capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                raise SystemExit(f"{search} at {history}: {done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{search:14} {history:>8} {row['suggest_p50_ms']:>9.1f} / {row['suggest_p99_ms']:<8.1f} "
                  f"{row['result_p50_ms']:>8.2f} / {row['result_p99_ms']:<8.2f} {row['peak_rss_mb']:>10.0f}", flush=True)
        by = {r["search"]: r for r in rows if r["history"] == history}
        if "optuna" in by and "optuna-stock" in by:
            print(f"{'':14} {history:>8} tunelab / stock suggest p99: "
                  f"{by['optuna']['suggest_p99_ms'] / by['optuna-stock']['suggest_p99_ms']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("driver", help="driver-side cost per suggestion and per result, without actors")
    d.add_argument("--history", type=int, nargs="+", default=[1000, 3000, 10000])
    d.add_argument("--suggestions", type=int, default=20)
    d.add_argument("--searchers", nargs="+", default=list(MEASURED), choices=SEARCHERS)
    d.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    driver(args)


if __name__ == "__main__":
    main()
