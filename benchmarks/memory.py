"""Memory of K concurrent trials: one dataset shared through Ray's object store vs a copy per trial.

Data: synthetic CIFAR-10-sized files (50,000 + 10,000 images of 3x32x32, about 184 MB in memory)
written in the original batch format. Each mode runs `tunelab tune` with K trials at once
(K in --trials-at-once), one epoch each of a tiny CNN, on a fresh local Ray instance:
    shared  - tunelab as it is: the driver loads the dataset once and hands it to every trial
              through the object store (`tune.with_parameters`); trials map it zero-copy;
    private - the same run with the shared dataset withheld, so every trial loads its own copy.
Memory is sampled every 0.2 s while the run goes: the sum over all processes of their
proportional set size (PSS: a page shared by n processes counts 1/n to each, so shared memory
is counted once), and the machine's used memory (MemTotal - MemAvailable). Figures are the peak
during the run minus the level just before it (Ray already started). The cost of an added trial
is the slope of the peak against K.

    python benchmarks/memory.py                       # K = 1, 2, 4
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.conftest writes the CIFAR batch files

MB = 2**20
FIXED = ["model=small_cnn", "width=4", "batch_size=512", "eval_batch_size=1024"]


def total_pss() -> int:
    """Bytes: the sum of every process's proportional set size."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:  # gone, or not ours to read
            continue
    return total


def used_memory() -> int:
    """Bytes: MemTotal - MemAvailable."""
    fields = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) * 1024
    return fields["MemTotal"] - fields["MemAvailable"]


class PeakSampler:
    """Samples PSS and used memory in a thread; `stop()` returns the peaks above the start level."""

    def __init__(self, period_s: float = 0.2):
        self.period = period_s
        self.start = (total_pss(), used_memory())
        self.peak = self.start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.period):
            pss, used = total_pss(), used_memory()
            self.peak = (max(self.peak[0], pss), max(self.peak[1], used))

    def stop(self) -> tuple[float, float]:
        self._done.set()
        self._thread.join()
        return ((self.peak[0] - self.start[0]) / MB, (self.peak[1] - self.start[1]) / MB)


def run_mode(mode: str, k: int, data_dir: Path, storage: Path) -> tuple[float, float]:
    import ray

    import tunelab.search_plan as search_plan
    from tunelab.cluster import connect_ray
    from tunelab.driver import run_tune
    from tunelab.tune_options import TuneOptions

    load_shared = search_plan.load_shared_data
    if mode == "private":
        # With no shared dataset the trainable loads its own (tunelab.trainables.make_trainable).
        search_plan.load_shared_data = lambda method, fixed, **kwargs: None
    try:
        connect_ray(None)
        time.sleep(2)  # let Ray's own processes settle before the baseline
        sampler = PeakSampler()
        run_tune(TuneOptions(
            method="classifier", dataset="cifar10", data_dir=str(data_dir), num_samples=k, max_epochs=1,
            search="random", scheduler="fifo", max_concurrent=k, cpus_per_trial=2 / k,
            storage=str(storage), name=f"{mode}-{k}", sets=FIXED))
        return sampler.stop()
    finally:
        search_plan.load_shared_data = load_shared
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-at-once", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    from tests.conftest import write_cifar10

    scratch = Path(tempfile.mkdtemp(prefix="tunelab-memory-"))
    data_dir = scratch / "cifar"
    write_cifar10(data_dir / "cifar-10-batches-py", n_train_per_batch=10_000, n_test=10_000)
    dataset_mb = 60_000 * 3 * 32 * 32 / MB
    print(f"machine: {os.cpu_count()} cores; dataset: 60,000 x 3x32x32 uint8 = {dataset_mb:.0f} MB; "
          f"one epoch of small_cnn width 4 per trial")
    peaks: dict[str, list[tuple[int, float, float]]] = {"shared": [], "private": []}
    for k in args.trials_at_once:
        for mode in peaks:
            pss, used = run_mode(mode, k, data_dir, scratch / "runs")
            peaks[mode].append((k, pss, used))
            print(f"K={k} {mode:7s}: peak PSS +{pss:7.0f} MB, used memory +{used:7.0f} MB", flush=True)
    for mode, rows in peaks.items():
        ks, pss, used = (np.array(column) for column in zip(*rows))
        print(f"{mode:7s}: each added trial costs {np.polyfit(ks, pss, 1)[0]:.0f} MB of PSS "
              f"({np.polyfit(ks, used, 1)[0]:.0f} MB of used memory)")
    for (k, pss_s, _), (_, pss_p, _) in zip(peaks["shared"], peaks["private"]):
        print(f"K={k}: private / shared peak PSS = {pss_p / pss_s:.2f}x")


if __name__ == "__main__":
    main()
