"""Orchestration overhead and scaling of `tunelab tune`, measured side by side in one run.

overhead: N trials of about 10 s each (`--epochs`), run by `tunelab tune` at each concurrency in
`--concurrency`. Ideal = the same N configs trained one after another in this process (same
threads per trial, same data), summed, divided by the concurrency: what a perfect scheduler
would take. Ratio = tune wall time / ideal; Ray's start-up is inside the tune wall time (a user
waits for it too). A second reference separates the machine from the orchestration: the same
configs run by a plain process pool of the same size (no Ray), whose own ratio to the ideal is
what running trials side by side costs on these cores (shared caches, memory bandwidth).

scaling: wall time of tune runs of 8, 16, 32 tiny trials at concurrency 1 and 2 (one Ray
instance for all); the per-trial fixed cost is the slope of wall time against trials at
concurrency 1 minus the mean training seconds of one trial (after an unrecorded warm-up run, so the
first row does not carry the workers' start-up).

breakdown: where a search's wall time goes, phase by phase, for the command a user types
(`tunelab tune classifier --dataset digits --num-samples N --max-epochs 6 --scheduler fifo
--search random --max-concurrent C`, a new process each), at concurrency 1 and 2 and at 1, 6 and 24
trials. The phases come from TUNELAB_PHASE_LOG (trainables/phases.py), which the driver and every
trial append to. The floor, measured in the same run: `python -c "import torch, ray; ray.init()"`.

    python benchmarks/overhead.py overhead --trials 16 --concurrency 1 2
    python benchmarks/overhead.py scaling
    python benchmarks/overhead.py breakdown
    python benchmarks/overhead.py cli

cli: wall time of `tunelab --help`-like commands and refusals that need no data, each a new
process, against `python -c "import torch"`, interleaved round by round (median of --rounds).
"""
from __future__ import annotations

import argparse
import os
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
    from tunelab.driver import run_tune
    from tunelab.tune_options import TuneOptions

    began = time.perf_counter()
    run_tune(TuneOptions(method="classifier", num_samples=trials, max_epochs=epochs, scheduler="fifo",
                         search="random", max_concurrent=concurrency, storage=str(storage), name=name, sets=sets))
    return time.perf_counter() - began


def _configs(experiment: Path) -> list[dict]:
    import json

    return [json.loads(p.read_text()) for p in sorted(experiment.glob("*/params.json"))]


_DATA: dict = {}  # loaded datasets by DataOptions, so repeated configs load theirs once


def _train_one(values: dict) -> float:
    """Train one config in this process (data loaded first, not timed); its training seconds."""
    from tunelab.trainables import get_method
    from tunelab.trainables.config import build_config
    from tunelab.trainables.data import load_dataset
    from tunelab.trainables.engine import train
    from tunelab.trainables.reporting import LocalReporter

    method = get_method("classifier")
    config = build_config(method.config_class, values)
    if config.data_options() not in _DATA:
        _DATA[config.data_options()] = load_dataset(config.data_options())
    data = _DATA[config.data_options()]
    began = time.perf_counter()
    train(method, config, LocalReporter(None, {}, quiet=True), data=data)
    return time.perf_counter() - began


def _sequential(configs: list[dict]) -> float:
    """Every config trained one after another in this process: the sum of their training times."""
    return sum(_train_one(values) for values in configs)


def _pool(configs: list[dict], concurrency: int) -> float:
    """The same configs on a plain process pool of `concurrency` workers (warmed up first): wall time."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        pool.map(_train_one, [{**configs[0], "epochs": 1}] * concurrency)  # imports and data, untimed
        began = time.perf_counter()
        pool.map(_train_one, configs, chunksize=1)
        return time.perf_counter() - began


def overhead(args) -> None:
    import ray

    from tunelab.cluster import connect_ray

    storage = Path(tempfile.mkdtemp(prefix="tunelab-overhead-"))
    walls = {}
    for concurrency in args.concurrency:
        began = time.perf_counter()  # Ray's start-up counts: every user run pays it
        connect_ray(None)
        _tune(storage, f"c{concurrency}", args.trials, concurrency, args.epochs, SMALL)
        walls[concurrency] = time.perf_counter() - began
        ray.shutdown()
    configs = _configs(storage / f"c{args.concurrency[0]}")
    for concurrency in args.concurrency:  # same seed, same search: the same configs every time
        assert sorted(map(str, _configs(storage / f"c{concurrency}"))) == sorted(map(str, configs))
    sequential = _sequential(configs)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; 1 CPU thread per trial")
    print(f"{len(configs)} trials of {args.epochs} epochs, mean {sequential / len(configs):.1f} s each when "
          f"trained alone; sequential total {sequential:.1f} s")
    for concurrency, wall in walls.items():
        ideal = sequential / concurrency
        pool = _pool(configs, concurrency)
        in_trials, _ = _training_seconds(storage / f"c{concurrency}")
        print(f"concurrency {concurrency}: tunelab tune {wall:6.1f} s (training inside trials {in_trials:.1f} s); "
              f"ideal {ideal:.1f} s; process pool {pool:.1f} s")
        print(f"  overhead ratio tune / ideal: {wall / ideal:.3f}x (goal <= 1.15x); "
              f"tune / process pool: {wall / pool:.3f}x; pool / ideal: {pool / ideal:.3f}x")


def scaling(args) -> None:
    from tunelab.cluster import connect_ray

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


def _floor(repeats: int = 3) -> float:
    """Median wall time of a fresh `python -c "import torch, ray; ray.init()"` (its exit included)."""
    import statistics
    import subprocess
    import sys

    walls = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, ray; ray.init(address='local', include_dashboard=False)"],
                       check=True, capture_output=True)
        walls.append(time.perf_counter() - began)
    return statistics.median(walls)


def _tune_process(storage: Path, name: str, trials: int, concurrency: int, epochs: int) -> tuple[float, list[dict]]:
    """`tunelab tune` as a user starts it: wall time from spawn to exit, and its phase log."""
    import json
    import subprocess
    import sys

    log = storage / f"{name}.phases.jsonl"
    argv = [sys.executable, "-m", "tunelab.cli", "tune", "classifier", "--dataset", "digits", "--num-samples",
            str(trials), "--max-epochs", str(epochs), "--scheduler", "fifo", "--search", "random",
            "--max-concurrent", str(concurrency), "--storage", str(storage), "--name", name,
            "--address", "local", "--json"]
    env = {**os.environ, "TUNELAB_PHASE_LOG": str(log)}
    began = time.time()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    ended = time.time()
    marks = [json.loads(line) for line in log.read_text().splitlines()]
    return ended - began, [{"phase": "spawn", "t": began}, *marks, {"phase": "exit", "t": ended}]


def phase_breakdown(marks: list[dict], concurrency: int) -> dict[str, float]:
    """Seconds per phase from one run's marks (see the module docstring); per-trial and per-epoch
    phases are means over the run's trials and epochs."""
    first = {}
    for m in marks:
        first.setdefault(m["phase"], m["t"])
    enters = sorted(m["t"] for m in marks if m["phase"] == "trial_enter")
    exits = sorted(m["t"] for m in marks if m["phase"] == "trial_exit")
    begins = {m["trial"]: m["t"] for m in marks if m["phase"] == "train_begin"}
    enter_of = {m["trial"]: m["t"] for m in marks if m["phase"] == "trial_enter"}
    reports = [m for m in marks if m["phase"] == "report"]
    # a trial after the first `concurrency` starts in the slot the latest exit before it freed
    waits = [enter - max([x for x in exits if x <= enter], default=first["fit_start"])
             for enter in enters[concurrency:]]
    plain = [m["t"] - m["began"] for m in reports if not m["checkpoint"]]
    saved = [m["t"] - m["began"] for m in reports if m["checkpoint"]]
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    training = sum(m["epoch_s"] for m in reports)
    return {
        "process start + CLI import": first["cli_main"] - first["spawn"],
        "driver imports (torch, Ray, pandas)": first["driver_imported"] - first["cli_main"],
        "checks + data load": first["data_loaded"] - first["driver_imported"],
        "ray.init": first["ray_ready"] - first["data_loaded"],
        "record, searcher, Tuner": first["fit_start"] - first["ray_ready"],
        "first trial: actor start": enters[0] - first["fit_start"],
        "per trial: next actor start": mean(waits),
        "per trial: setup to first step": mean([begins[t] - enter_of[t] for t in begins if t in enter_of]),
        "per epoch: report": mean(plain),
        "per epoch: report + checkpoint": mean(saved),
        "end: last trial exit to fit end": first["fit_end"] - exits[-1],
        "end: summary + exit": first["exit"] - first["fit_end"],
        "start to first trial's first epoch": min(begins.values()) - first["spawn"],
        "wall": first["exit"] - first["spawn"],
        "training (summed epochs)": training,
        "epochs": len(reports),
    }


def breakdown(args) -> None:
    storage = Path(tempfile.mkdtemp(prefix="tunelab-breakdown-"))
    floor = _floor()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the "
          f"start; floor `import torch, ray; ray.init()`: {floor:.2f} s (median of 3)")
    columns = {}
    for concurrency in args.concurrency:
        for trials in args.trials:
            name = f"c{concurrency}-n{trials}"
            _, marks = _tune_process(storage, name, trials, concurrency, args.epochs)
            columns[name] = phase_breakdown(marks, concurrency)
            row = columns[name]
            ideal = row["training (summed epochs)"] / concurrency
            row["ratio wall / (training / concurrency)"] = row["wall"] / ideal
            row["ratio start-to-first-epoch / floor"] = row["start to first trial's first epoch"] / floor
            print(f"{name}: wall {row['wall']:.1f} s, ratio {row['ratio wall / (training / concurrency)']:.3f}",
                  flush=True)
    frame = pd.DataFrame(columns)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on the machine inflates every row)")
    print(frame.to_string(float_format=lambda v: f"{v:.3f}"))
    frame.to_csv(storage / "breakdown.csv")
    print(f"phase logs and breakdown.csv in {storage}")


CLI_COMMANDS = {
    "import torch (reference)": ["-c", "import torch"],
    "tunelab --version": ["-m", "tunelab.cli", "--version"],
    "tunelab tune --help": ["-m", "tunelab.cli", "tune", "--help"],
    "tunelab compare --help": ["-m", "tunelab.cli", "compare", "--help"],
    "train classifier --set lr=nan": ["-m", "tunelab.cli", "train", "classifier", "--set", "lr=nan"],
    "train classifier --set model=nope": ["-m", "tunelab.cli", "train", "classifier", "--set", "model=nope"],
    "tune classifier --search bad": ["-m", "tunelab.cli", "tune", "classifier", "--search", "bad"],
    "tune adarand --set rand_lr=-1": ["-m", "tunelab.cli", "tune", "adarand", "--set", "rand_lr=-1"],
    "compare --seeds 0": ["-m", "tunelab.cli", "compare", "--seeds", "0"],
}


def cli(args) -> None:
    import statistics
    import subprocess
    import sys

    times: dict[str, list[float]] = {name: [] for name in CLI_COMMANDS}
    for _ in range(args.rounds):  # round by round, so a burst of load hits every command alike
        for name, argv in CLI_COMMANDS.items():
            began = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True)
            times[name].append(time.perf_counter() - began)
    reference = statistics.median(times["import torch (reference)"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.rounds} rounds")
    for name, walls in times.items():
        ratio = statistics.median(walls) / reference
        verdict = "" if name.startswith("import torch") else ("  (goal <= 0.333: met)" if ratio <= 1 / 3
                                                              else "  (goal <= 0.333: MISSED)")
        print(f"{name:36s} {statistics.median(walls):6.3f} s  {ratio:5.3f}x import torch{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--trials", type=int, default=16)
    o.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    o.add_argument("--epochs", type=int, default=25, help="epochs per trial (about 0.4 s each here)")
    sub.add_parser("scaling")
    b = sub.add_parser("breakdown")
    b.add_argument("--trials", type=int, nargs="+", default=[1, 6, 24])
    b.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    b.add_argument("--epochs", type=int, default=6)
    c = sub.add_parser("cli")
    c.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    {"overhead": overhead, "scaling": scaling, "breakdown": breakdown, "cli": cli}[args.what](args)


if __name__ == "__main__":
    main()
