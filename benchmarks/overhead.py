"""Orchestration overhead and scaling of `tunelab tune`, measured side by side in one run.

overhead: N trials of about `--trial-seconds` each. Baseline = the same N configs trained one
after another in this process (same threads per trial, same data), their summed training time
divided by the concurrency: what a perfect scheduler would take. Ratio = tune wall time / that.
Ray's start-up is included in the tune wall time (a user waits for it too).

scaling: wall time of tune runs of 8, 16, 32 tiny trials at concurrency 1 and 2 (one Ray
instance for all); the per-trial fixed cost is the slope of wall time against trials at
concurrency 1 minus the mean training seconds of one trial (after an unrecorded warm-up run, so the
first row does not carry the workers' start-up).

    python benchmarks/overhead.py overhead --trials 8 --concurrency 2
    python benchmarks/overhead.py scaling
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SMALL = ["image_size=16", "width=16", "batch_size=64", "optimizer=adam", "schedule=cosine"]
TINY = ["image_size=8", "width=8", "batch_size=128"]


def _training_seconds(experiment: Path) -> tuple[float, int]:
    frames = [pd.read_csv(p) for p in experiment.glob("*/progress.csv")]
    return float(sum(f["time/epoch_s"].sum() for f in frames)), len(frames)


def _tune(storage: Path, name: str, trials: int, concurrency: int, epochs: int, sets: list[str]) -> float:
    from tunelab.driver import TuneOptions, run_tune

    began = time.perf_counter()
    run_tune(TuneOptions(method="classifier", num_samples=trials, max_epochs=epochs, scheduler="fifo",
                         search="random", max_concurrent=concurrency, storage=str(storage), name=name, sets=sets))
    return time.perf_counter() - began


def _sequential(storage: Path, name: str, sets: list[str], epochs: int) -> float:
    """Train every config of a finished experiment again, one after another, in this process."""
    import json

    from trainables import get_method
    from trainables.config import build_config
    from trainables.data import load_dataset
    from trainables.engine import train
    from trainables.reporting import LocalReporter

    method = get_method("classifier")
    configs = [json.loads(p.read_text()) for p in (storage / name).glob("*/params.json")]
    data = load_dataset(build_config(method.config_class, configs[0]).data_options())
    began = time.perf_counter()
    for values in configs:
        train(method, build_config(method.config_class, values), LocalReporter(None, {}, quiet=True), data=data)
    return time.perf_counter() - began


def overhead(args) -> None:
    import ray

    from tunelab.driver import connect_ray

    storage = Path(tempfile.mkdtemp(prefix="tunelab-overhead-"))
    began = time.perf_counter()
    connect_ray(None)
    start_s = time.perf_counter() - began
    wall = _tune(storage, "overhead", args.trials, args.concurrency, args.epochs, SMALL) + start_s
    ray.shutdown()
    sequential = _sequential(storage, "overhead", SMALL, args.epochs)
    in_trials, n = _training_seconds(storage / "overhead")
    ideal = sequential / args.concurrency
    print(f"machine: {platform.machine()}, {args.concurrency} trials at once, 1 CPU thread per trial")
    print(f"{n} trials of {args.epochs} epochs, mean {sequential / n:.1f} s each when trained alone")
    print(f"Ray start-up              : {start_s:6.1f} s")
    print(f"tunelab tune wall time    : {wall:6.1f} s (training inside trials: {in_trials:.1f} s summed)")
    print(f"sequential / concurrency  : {ideal:6.1f} s")
    print(f"overhead ratio            : {wall / ideal:.3f}x (goal <= 1.15x)")


def scaling(args) -> None:
    from tunelab.driver import connect_ray

    storage = Path(tempfile.mkdtemp(prefix="tunelab-scaling-"))
    connect_ray(None)
    _tune(storage, "warm-up", 4, 2, 2, TINY)  # worker start-up and imports, not part of any row
    rows = []
    for concurrency in (1, 2):
        for trials in (8, 16, 32):
            name = f"c{concurrency}-n{trials}"
            wall = _tune(storage, name, trials, concurrency, 2, TINY)
            training, _ = _training_seconds(storage / name)
            rows.append({"concurrency": concurrency, "trials": trials, "wall_s": wall, "training_s": training})
            print(f"concurrency {concurrency}, {trials:2d} trials: {wall:6.1f} s wall, {training:5.1f} s training")
    frame = pd.DataFrame(rows)
    serial = frame[frame["concurrency"] == 1]
    slope = float(np.polyfit(serial["trials"], serial["wall_s"], 1)[0])
    train_per_trial = float((serial["training_s"] / serial["trials"]).mean())
    print(f"wall seconds per added trial at concurrency 1: {slope:.2f} s, of which training {train_per_trial:.2f} s")
    print(f"per-trial fixed cost: {slope - train_per_trial:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--trials", type=int, default=8)
    o.add_argument("--concurrency", type=int, default=2)
    o.add_argument("--epochs", type=int, default=10, help="epochs per trial (about 1 s each here)")
    sub.add_parser("scaling")
    args = parser.parse_args()
    overhead(args) if args.what == "overhead" else scaling(args)


if __name__ == "__main__":
    main()
