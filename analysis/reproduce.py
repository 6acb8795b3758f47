"""The best config of an experiment, with provenance, and its seeded retraining outside the search.

`best_record(path)` picks the trial with the best epoch by the optimised metric and resolves its
full config. `reproduce(record, seeds)` retrains it with the trial's own seed first, then the
next seeds, and evaluates the test split once at the end of each run (confirmation). On a CPU,
the first run repeats the trial's numbers exactly: same seed, epochs, data split and number of
CPU threads (recorded as `threads`), and the engine reseeds every epoch.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tunelab.analysis.load import experiment_id, load_experiment, read_record, trial_summary
from tunelab.core.ranking import rank_trials
from tunelab.core.redaction import redact
from tunelab.analysis.tables import config_of
from tunelab.trainables import get_method
from tunelab.core import metrics as M
from tunelab.trainables.config import build_config, read_yaml_mapping, to_dict
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import atomic_write_text, check_output_path


def best_record(path: str | Path) -> dict[str, Any]:
    location = experiment_id(path)
    record = read_record(path)
    metric, mode = record["metric"], record["mode"]
    ranked = rank_trials(trial_summary(load_experiment(path), metric, mode), metric, mode)
    if ranked.empty:
        raise ConfigError(f"{location!r} has no trial that reported {metric}; nothing to pick")
    top = ranked.iloc[0]
    method = get_method(record["method"])
    config = to_dict(build_config(method.config_class, config_of(top)))
    return {
        "method": record["method"],
        "config": config,
        "provenance": {
            "experiment": redact(location), "trial_id": str(top["trial_id"]), "trial_dir": str(top["trial_dir"]),
            "epoch": int(top["best_epoch"]), "metric": metric, "mode": mode, "value": float(top[metric]),
            "trial_status": str(top["status"]), "seed": config["seed"], "threads": config["threads"],
            "git_commit": record.get("git_commit"), "packages": record.get("packages", {}),
            "command": record.get("command"),
            **({"pretrained_source": "unknown, used unchecked (allow_unknown_source=true)"}
               if config.get("allow_unknown_source") else {}),
        },
    }


def write_best(record: dict[str, Any], out: str | Path) -> None:
    out = check_output_path(out, "--out", "file")
    if out.exists():
        raise ConfigError(f"--out {str(out)!r} already exists; choose another file (it is kept as it is)")
    atomic_write_text(out, yaml.safe_dump(record, sort_keys=False))


BEST_KEYS = ("method", "config", "provenance")


def load_best(path: str | Path) -> dict[str, Any]:
    """A best-config file, checked: every field a reproduction relies on is named when it is wrong."""
    hint = "; make one with `tunelab best EXPERIMENT --out FILE`"
    shown = repr(str(path))
    record = read_yaml_mapping(str(path), shown, "be a best-config file", hint)
    if "method" not in record or "config" not in record:
        raise ConfigError(f"{shown} is not a best-config file (needs 'method' and 'config'){hint}")
    unknown = [k for k in record if k not in BEST_KEYS]
    if unknown:
        raise ConfigError(f"{shown}: unknown field {unknown[0]!r}; valid fields: {', '.join(BEST_KEYS)}")
    method = record["method"]
    if not isinstance(method, str):
        raise ConfigError(f"{shown}: field 'method' must be a method name, got {method!r}")
    try:
        method_class = get_method(method).config_class
    except ConfigError as exc:
        raise ConfigError(f"{shown}: field 'method': {exc}") from None
    for field in ("config", "provenance"):
        if not isinstance(record.get(field, {}), dict):
            raise ConfigError(f"{shown}: field {field!r} must be a mapping, got {type(record[field]).__name__}")
    _check_whole(shown, "config.seed", record["config"].get("seed", 0))
    provenance = record.get("provenance", {})
    if "epoch" in provenance:
        _check_whole(shown, "provenance.epoch", provenance["epoch"], low=1)
    value = provenance.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{shown}: field 'provenance.value' must be a number, got {value!r}")
    if not isinstance(provenance.get("metric", M.VAL_ACC), str):
        raise ConfigError(f"{shown}: field 'provenance.metric' must be a metric name, got {provenance['metric']!r}")
    try:
        build_config(method_class, record["config"])
    except ConfigError as exc:
        raise ConfigError(f"{shown}: field 'config': {exc}") from None
    return record


def _check_whole(shown: str, field: str, value: Any, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{shown}: field {field!r} must be a whole number >= {low}, got {value!r}")


def confirm(method_name: str, config_values: dict[str, Any], seed: int, data=None) -> list[dict[str, Any]]:
    """Train once with `seed`, test evaluated at the end; returns the per-epoch history."""
    from tunelab.trainables import faults
    from tunelab.trainables.engine import train
    from tunelab.trainables.reporting import LocalReporter

    method = faults.wrap(get_method(method_name))  # as a trial's: tests arm faults in confirmations too
    config = build_config(method.config_class, {**config_values, "seed": seed})
    reporter = LocalReporter(None, {}, quiet=True)
    train(method, config, reporter, data=data, evaluate_test=True)
    return reporter.history


def reproduce(record: dict[str, Any], seeds: int, say=None) -> dict[str, Any]:
    """Retrain with `seeds` seeds; `say(text)` is told which seed runs and the time left after the first."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} is out of range; allowed: >= 1")
    provenance = record.get("provenance", {})
    base_seed = int(record["config"].get("seed", 0))
    epoch = int(provenance.get("epoch", record["config"].get("epochs", 1)))
    metric = provenance.get("metric", M.VAL_ACC)
    runs = []
    began = time.monotonic()
    for i in range(seeds):
        if say is not None:
            left = "" if i == 0 else f", about {(time.monotonic() - began) / i * (seeds - i):.0f} s left"
            say(f"seed {base_seed + i} ({i + 1}/{seeds}){left}")
        history = confirm(record["method"], record["config"], base_seed + i)
        at_epoch = history[min(epoch, len(history)) - 1]
        final = history[-1]
        runs.append({"seed": base_seed + i, f"{metric}@{epoch}": at_epoch.get(metric),
                     M.VAL_ACC: final.get(M.VAL_ACC), M.TEST_ACC: final.get(M.TEST_ACC),
                     M.TEST_ACC_TOP5: final.get(M.TEST_ACC_TOP5)})
    frame = pd.DataFrame(runs)
    recorded = provenance.get("value")
    exact = recorded is not None and runs[0][f"{metric}@{epoch}"] == recorded
    return {
        "method": record["method"], "seeds": runs, "recorded": recorded, "recorded_epoch": epoch,
        "reproduced_exactly": bool(exact),
        "val_acc_mean": float(frame[M.VAL_ACC].mean()), "val_acc_std": _std(frame[M.VAL_ACC]),
        "test_acc_mean": float(frame[M.TEST_ACC].mean()), "test_acc_std": _std(frame[M.TEST_ACC]),
    }


def _std(series: pd.Series) -> float:
    return float(series.std(ddof=1)) if len(series) > 1 else math.nan

