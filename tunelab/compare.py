"""`tunelab compare`: tune every method under the same budget on one dataset, confirm each best
config with seeds on the test split, print the comparison table and write the report.

Same budget = same number of trials, same epochs per trial, same scheduler and seed for every
method. The fine-tuning methods start from the offline backbone (`pretrained=auto`), made once
before the searches; its cost is reported separately, not charged to any method.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from trainables import METHOD_CLASSES
from trainables import metrics as M
from trainables.errors import ConfigError
from trainables.fileio import check_output_path
from tunelab.driver import TuneOptions, check_trackers, connect_ray, run_tune
from tunelab.options import option, shared

DEFAULT_METHODS = tuple(METHOD_CLASSES)  # every registered method, in registration order


@dataclass
class CompareOptions:
    """`tunelab compare`'s options; those it shares with `tune` are declared there (tunelab.options)."""

    dataset: str = shared(TuneOptions, "dataset", default="digits")
    data_dir: str | None = shared(TuneOptions, "data_dir")
    methods: tuple[str, ...] = option(DEFAULT_METHODS, "comma-separated methods (default: every registered one)")
    out: str | None = option(None, "folder for experiments and report (default compare/DATASET-TIME)")
    num_samples: int = shared(TuneOptions, "num_samples", default=4)
    max_epochs: int = shared(TuneOptions, "max_epochs", default=4)
    seeds: int = option(3, "confirmation seeds per method")
    seed: int = shared(TuneOptions, "seed")
    cpus_per_trial: float = shared(TuneOptions, "cpus_per_trial")
    gpus_per_trial: float = shared(TuneOptions, "gpus_per_trial")
    address: str | None = shared(TuneOptions, "address")
    mlflow: str | None = shared(TuneOptions, "mlflow")
    wandb: str | None = shared(TuneOptions, "wandb")
    baseline: str | None = option(None, "method the others are compared with (default finetune)")


def parse_methods(text: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_METHODS
    if isinstance(text, tuple):
        return text
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    for method in methods:
        if method not in METHOD_CLASSES:
            raise ConfigError(f"--methods: {method!r} is not known; choose from: {', '.join(METHOD_CLASSES)}")
    if not methods:
        raise ConfigError(f"--methods {text!r} names no method; choose from: {', '.join(METHOD_CLASSES)}")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise ConfigError(f"--methods {text!r} names {repeated[0]!r} twice; each method is searched once")
    return methods


def check_baseline(baseline: str | None, methods: tuple[str, ...]) -> None:
    if baseline is not None and baseline not in methods:
        raise ConfigError(f"--baseline {baseline!r} is not one of the compared methods; choose from: "
                          f"{', '.join(methods)}")


def _say(text: str) -> None:
    print(f"[tunelab compare] {text}", file=sys.stderr, flush=True)


def run_compare(opts: CompareOptions) -> dict[str, Any]:
    if opts.seeds < 1:
        raise ConfigError(f"--seeds {opts.seeds} is out of range; allowed: >= 1")
    check_baseline(opts.baseline, opts.methods)
    check_trackers(opts.mlflow, opts.wandb)
    out = check_output_path(opts.out if opts.out is not None else
                            f"compare/{opts.dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}", "--out", "folder")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {str(out)!r} already exists and is not empty; choose another folder "
                          "(its results are kept)")
    began = time.perf_counter()
    connect_ray(opts.address)
    experiments = {}
    for index, method in enumerate(opts.methods):
        spent = time.perf_counter() - began
        left = f", about {spent / index * (len(opts.methods) - index):.0f} s of searching left" if index else ""
        _say(f"tuning {method} ({index + 1}/{len(opts.methods)}): {opts.num_samples} trials x up to "
             f"{opts.max_epochs} epochs{left}")
        summary = run_tune(TuneOptions(method=method, dataset=opts.dataset, data_dir=opts.data_dir,
                                       num_samples=opts.num_samples, max_epochs=opts.max_epochs, seed=opts.seed,
                                       cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=opts.gpus_per_trial,
                                       mlflow=opts.mlflow, wandb=opts.wandb,
                                       # a URI: valid whether Ray runs here alone or joined a local cluster
                                       storage=(out / "runs").resolve().as_uri(), name=method))
        if summary.get("interrupted"):  # Ctrl-C/SIGTERM stopped this search: stop the comparison too
            _say(f"interrupted while tuning {method}; its experiment is resumable: "
                 f"tunelab resume {summary['experiment']}")
            raise KeyboardInterrupt
        experiments[method] = summary
    _say(f"confirming each best config with {opts.seeds} seeds on the test split")
    confirmations = confirm_all(experiments, opts.seeds, opts.cpus_per_trial, opts.gpus_per_trial)
    from analysis.report import write_report

    report = write_report([s["experiment"] for s in experiments.values()], out / "report", confirmations,
                          baseline=opts.baseline)
    return {"out": str(out), "report": str(out / "report" / "report.md"), "table": report["table"],
            "wall_s": time.perf_counter() - began}


def confirm_all(experiments: dict[str, dict], seeds: int, cpus: float, gpus: float) -> pd.DataFrame:
    """Retrain every method's best config with `seeds` seeds, as parallel Ray tasks."""
    import ray

    from analysis.reproduce import best_record

    remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(_confirm_task)
    futures, keys = [], []
    for method, summary in experiments.items():
        try:
            record = best_record(summary["experiment"])
        except ConfigError as exc:
            _say(f"{method}: no confirmation ({exc})")
            continue
        base = int(record["config"]["seed"])
        for i in range(seeds):
            futures.append(remote.remote(method, record["config"], base + i))
            keys.append((method, summary["dataset"], base + i, record["provenance"]["trial_id"]))
    rows = []
    for (method, dataset, seed, trial_id), final in zip(keys, ray.get(futures)):
        rows.append({"method": method, "dataset": dataset, "seed": seed, "trial_id": trial_id,
                     M.VAL_ACC: final.get(M.VAL_ACC), M.TEST_ACC: final.get(M.TEST_ACC),
                     M.TEST_ACC_TOP5: final.get(M.TEST_ACC_TOP5), "epochs": final.get(M.EPOCH)})
    return pd.DataFrame(rows, columns=["method", "dataset", "seed", "trial_id", M.VAL_ACC, M.TEST_ACC,
                                       M.TEST_ACC_TOP5, "epochs"])


def _confirm_task(method: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    from analysis.reproduce import confirm

    history = confirm(method, config, seed)
    return history[-1]
