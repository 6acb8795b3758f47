"""`tunelab compare` one search after another vs `--parallel`, side by side in one run.

Both modes run the same comparison (same methods, trials, epochs, seed) on the same private Ray
instance size (this machine's CPUs), alternating, `--repeats` times each. Measured per run:

- searches_s: wall time of the searches (compare's own figure: from the first search's start to
  the last one's end; the source pretraining and the confirmation runs are outside it);
- busy share: sum over every trial of its run time (Ray's `time_total_s` of its last result) x
  CPUs per trial, divided by (the cluster's CPUs x searches_s): how much of the cluster the
  searches kept busy. 1.0 is every CPU busy with a trial for the whole wall time.

    python benchmarks/compare_parallel.py --repeats 3                       # compare's default task
    python benchmarks/compare_parallel.py --train-per-class 0 --repeats 2   # every training image: longer trials
    python benchmarks/compare_parallel.py --slots 8 --epoch-sleep 0.3 --repeats 2

The last one stands for a cluster of 8 trial slots whose trials wait on something other than
these 2 cores (a GPU, say): a head started with `ray start --num-cpus 8`, every epoch sleeping
0.3 s first (the test faults' `sleep` file) so that 8 trials at once do not just share 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd


def trial_cpu_seconds(experiment: str, cpus_per_trial: float) -> tuple[float, int]:
    """Sum of the trials' run times x CPUs per trial, and the number of trials."""
    folder = Path(urlparse(experiment).path)
    frames = [pd.read_csv(p) for p in folder.glob("*/progress.csv")]
    return float(sum(f["time_total_s"].iloc[-1] for f in frames if len(f))) * cpus_per_trial, len(frames)


def run_compare(out: Path, parallel: bool, args: argparse.Namespace, env: dict[str, str]) -> dict:
    command = [sys.executable, "-m", "tunelab", "compare", "--methods", args.methods,
               "--num-samples", str(args.num_samples), "--max-epochs", str(args.max_epochs),
               "--grace-period", str(args.grace_period), "--train-per-class", str(args.train_per_class),
               "--seeds", "1", "--replicates", "1", "--out", str(out), "--json"]
    if parallel:
        command.append("--parallel")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"compare failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    busy, trials = 0.0, 0
    for experiment in summary["experiments"].values():
        seconds, n = trial_cpu_seconds(experiment, cpus_per_trial=1.0)
        busy, trials = busy + seconds, trials + n
    cpus = args.slots or os.cpu_count() or 1
    return {"mode": "parallel" if parallel else "sequential", "searches_s": summary["searches_s"],
            "trials": trials, "trial_cpu_s": busy, "busy_share": busy / (cpus * summary["searches_s"])}


@contextmanager
def head_node(cpus: int, env: dict[str, str]):
    """A one-node Ray cluster of `cpus` logical CPUs (no dashboard), in its own temp folder; yields
    its address and ends exactly its processes afterwards."""
    import socket

    from tunelab.cluster import end_session

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="tl-b-")
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                    "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
                   env={**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"},
                   check=True, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        end_session(os.path.realpath(os.path.join(temp, "session_latest")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="classifier,finetune")
    parser.add_argument("--num-samples", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--grace-period", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=10, help="compare's; 0 = every training image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slots", type=int, default=0, help="a head of this many CPUs (0: a private instance)")
    parser.add_argument("--epoch-sleep", type=float, default=0.0, help="seconds every epoch sleeps first")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root, ExitStack() as stack:
        env = {**os.environ, "RAY_ADDRESS": "local"}  # a private instance of this machine's CPUs, both modes
        if args.epoch_sleep:
            (Path(root) / "faults").mkdir()
            (Path(root) / "faults" / "sleep").write_text(repr(args.epoch_sleep))
            env["TUNELAB_FAULTS_DIR"] = str(Path(root) / "faults")
        if args.slots:  # Ray's token authentication, a token of this run's own
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
            env["RAY_ADDRESS"] = stack.enter_context(head_node(args.slots, env))
        for repeat in range(args.repeats):
            for parallel in (False, True):  # alternating, so drift on a shared machine hits both
                row = run_compare(Path(root) / f"{repeat}-{int(parallel)}", parallel, args, env)
                rows.append({"repeat": repeat, **row})
                print(f"repeat {repeat} {row['mode']:>10}: searches {row['searches_s']:.1f} s, "
                      f"busy share {row['busy_share']:.2f}", flush=True)
    table = pd.DataFrame(rows)
    medians = table.groupby("mode")[["searches_s", "busy_share", "trial_cpu_s"]].median()
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; methods {args.methods}, "
          f"{args.num_samples} trials x up to {args.max_epochs} epochs (ASHA from {args.grace_period}), "
          f"{args.train_per_class or 'all'} training images per class, "
          f"{args.slots or 'private instance of'} {'slots' if args.slots else 'this machine'}, "
          f"epoch sleep {args.epoch_sleep:g} s, "
          f"{args.repeats} repeats, medians:")
    print(medians.round(3).to_string())
    sequential, parallel = medians.loc["sequential"], medians.loc["parallel"]
    print(f"parallel / sequential: wall {parallel.searches_s / sequential.searches_s:.3f}x, "
          f"busy share {parallel.busy_share / sequential.busy_share:.3f}x")


if __name__ == "__main__":
    main()
