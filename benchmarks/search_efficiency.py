"""Search efficiency, counted in epochs (machine-independent), four strategies side by side.

On digits with the classifier's search space: epochs consumed (in the order they were trained)
until the best-so-far val/acc comes within 0.5 percentage points of a reference optimum, for
    (a) Optuna TPE + ASHA as `tunelab tune` runs it,
    (b) random search, every trial at full budget,
    (c) random search + ASHA,
    (d) Optuna's own TPE + its MedianPruner, in-process, without Ray.
Same trial cap for all; median over seeds. A run that never gets there counts as its whole
budget (cap x max epochs) and is marked. The reference optimum comes from a larger random search
at full budget, run once (`reference`) and stored in search_efficiency_reference.json; `compare`
takes the budget and fixed values from that file, so the two cannot drift apart.

    python benchmarks/search_efficiency.py reference        # once: 128 trials at full budget
    python benchmarks/search_efficiency.py compare          # 64 trials x 7 seeds per strategy
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import pandas as pd

from tunelab.core import metrics as M

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "search_efficiency_reference.json"
# Small and fast, and a val split large enough (30% of training data, ~430 images) that 0.5 pp
# is two images, not a coin flip on one.
FIXED = ["image_size=8", "width=8", "val_fraction=0.3"]
# 27 epochs = ASHA's rungs 1, 3, 9, 27 at tunelab's defaults (grace 1, reduction factor 3).
MAX_EPOCHS = 27
TOLERANCE = 0.005


def _epochs_until(rows: pd.DataFrame, target: float) -> tuple[int, bool]:
    """Epochs consumed, in training order, until val/acc >= target (or the total, not reached)."""
    rows = rows.sort_values("order").reset_index(drop=True)
    hit = rows.index[rows[M.VAL_ACC] >= target]
    return (int(hit[0]) + 1, True) if len(hit) else (len(rows), False)


def _ray_run(storage: Path, name: str, search: str, scheduler: str, trials: int, seed: int,
             max_epochs: int = MAX_EPOCHS, fixed: list[str] = FIXED, target: float | None = None) -> pd.DataFrame:
    """One `tunelab tune` run; with `target`, it ends there (--stop-at): later epochs would not count."""
    from tunelab.driver import TuneOptions, run_tune

    run_tune(TuneOptions(method="classifier", num_samples=trials, max_epochs=max_epochs, search=search,
                         scheduler=scheduler, seed=seed, storage=str(storage), name=name, sets=list(fixed),
                         stop_at=target))
    frames = [pd.read_csv(p) for p in (storage / name).glob("*/progress.csv")]
    rows = pd.concat(frames, ignore_index=True)
    # Ray's timestamp is whole seconds; within a second, a trial's own elapsed time breaks ties.
    rows = rows.sort_values(["timestamp", "time_total_s"], kind="stable").reset_index(drop=True)
    return rows.assign(order=range(len(rows)))


def _optuna_in_process(trials: int, seed: int, max_epochs: int = MAX_EPOCHS, fixed: list[str] = FIXED,
                       target: float | None = None) -> pd.DataFrame:
    """Optuna's own loop: TPE + MedianPruner, each epoch reported, no Ray."""
    import optuna

    from tunelab.search_spaces import SPACES
    from tunelab.trainables import get_method
    from tunelab.trainables.config import build_config, parse_set_options
    from tunelab.trainables.data import load_dataset
    from tunelab.trainables.engine import train
    from tunelab.trainables.reporting import LocalReporter
    from tunelab.searcher import optuna_distributions

    method = get_method("classifier")
    fixed = {**parse_set_options(fixed), "epochs": max_epochs, "seed": seed, "device": "cpu", "threads": 1}
    data = load_dataset(build_config(method.config_class, fixed).data_options())
    distributions = optuna_distributions(SPACES["classifier"])
    rows = []

    class Pruning(LocalReporter):
        def __init__(self, trial):
            super().__init__(None, {}, quiet=True)
            self.trial = trial

        def report(self, metrics, state):
            rows.append({M.VAL_ACC: metrics[M.VAL_ACC], "order": len(rows)})
            self.trial.report(metrics[M.VAL_ACC], metrics[M.EPOCH])
            if target is not None and metrics[M.VAL_ACC] >= target:
                self.trial.study.stop()  # the count ends here; no need to train the rest
                raise optuna.TrialPruned()
            if self.trial.should_prune():
                raise optuna.TrialPruned()

    def objective(trial):
        params = {name: _suggest(trial, name, dist) for name, dist in distributions.items()}
        final = train(method, build_config(method.config_class, {**fixed, **params}), Pruning(trial), data=data)
        return final[M.VAL_ACC_BEST]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=4))
    study.optimize(objective, n_trials=trials)
    return pd.DataFrame(rows)


def _suggest(trial, name, dist):
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def reference(args) -> None:
    storage = Path(tempfile.mkdtemp(prefix="tunelab-reference-"))
    rows = _ray_run(storage, "reference", "random", "fifo", args.trials, seed=12345)
    best = float(rows[M.VAL_ACC].max())
    per_trial = rows.groupby("trial_id")[M.VAL_ACC].max()
    # How hard the target is: the share of random full-budget trials that reach it on their own.
    share = float((per_trial >= best - TOLERANCE).mean())
    REFERENCE.write_text(json.dumps({"val_acc": best, "trials": args.trials, "max_epochs": MAX_EPOCHS,
                                     "fixed": FIXED, "search": "random, full budget, seed 12345",
                                     "share_of_trials_within_tolerance": share}, indent=2) + "\n")
    print(f"reference optimum val/acc {best:.4f} from {args.trials} random trials at full budget; "
          f"{share:.1%} of those trials come within {TOLERANCE:.1%} of it -> {REFERENCE}")


def compare(args) -> None:
    reference = json.loads(REFERENCE.read_text())
    ref, max_epochs, fixed = reference["val_acc"], reference["max_epochs"], reference["fixed"]
    target = ref - TOLERANCE
    storage = Path(tempfile.mkdtemp(prefix="tunelab-efficiency-"))
    budget = dict(max_epochs=max_epochs, fixed=fixed, target=target)
    strategies = {
        "(a) tunelab: TPE + ASHA": lambda s: _ray_run(storage, f"a{s}", "optuna", "asha", args.trials, s, **budget),
        "(b) random, full budget": lambda s: _ray_run(storage, f"b{s}", "random", "fifo", args.trials, s, **budget),
        "(c) random + ASHA": lambda s: _ray_run(storage, f"c{s}", "random", "asha", args.trials, s, **budget),
        "(d) Optuna TPE + median pruner": lambda s: _optuna_in_process(args.trials, s, **budget),
    }
    strategies = {name: run for name, run in strategies.items() if name[1] in args.strategies}
    cap = args.trials * max_epochs
    print(f"reference optimum {ref:.4f}; target {target:.4f}; cap {args.trials} trials x {max_epochs} epochs "
          f"= {cap}; seeds {list(range(args.seeds))}", flush=True)
    medians = {}
    for name, run in strategies.items():
        counts, reached_runs = [], 0
        for seed in range(args.seeds):
            epochs, reached = _epochs_until(run(seed), target)
            counts.append(epochs if reached else cap)
            reached_runs += reached
            print(f"  {name} seed {seed}: {epochs} epochs{'' if reached else ' (not reached: counted as the cap)'}",
                  flush=True)
        medians[name] = statistics.median(counts)
        print(f"{name}: median {medians[name]:.1f} epochs, target reached in {reached_runs}/{args.seeds} runs",
              flush=True)
    if len(medians) < 4:
        return
    a, b, c, d = medians.values()
    print(f"(a)/(b) = {a / b:.2f} (goal <= 0.25);  (a)/(c) = {a / c:.2f} (goal <= 1);  (a)/(d) = {a / d:.2f} (goal <= 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("reference").add_argument("--trials", type=int, default=128)
    c = sub.add_parser("compare")
    c.add_argument("--trials", type=int, default=64)
    c.add_argument("--seeds", type=int, default=7)
    c.add_argument("--strategies", nargs="+", default=list("abcd"), choices=list("abcd"),
                   help="a subset to run (several processes can share the work); ratios need all four")
    args = parser.parse_args()
    reference(args) if args.what == "reference" else compare(args)


if __name__ == "__main__":
    main()
