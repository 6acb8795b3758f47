"""The `tunelab` command line's parser: every command, its arguments and help (a fixed contract).

`tune` and `compare` take their options from the fields of TuneOptions and CompareOptions
(tunelab.options); the others are declared here. Errors print one line and exit 2.
"""
from __future__ import annotations

import argparse
import sys

from tunelab.compare_options import CompareOptions
from tunelab.core.exit_codes import EXIT_BAD_INPUT
from tunelab.options import add_arguments
from tunelab.tune_options import TuneOptions


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line (no usage block) with exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _method_names() -> list[str]:
    from tunelab.trainables import method_names

    return method_names()


def _add_config_options(p: argparse.ArgumentParser) -> None:
    from tunelab.trainables.catalog import dataset_names

    p.add_argument("--dataset", help=f"one of: {', '.join(dataset_names())} (default digits)")
    p.add_argument("--data-dir", help="folder holding the dataset files (or set TUNELAB_DATA_DIR)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value; repeatable (e.g. --set lr=0.01 --set model=resnet18)")


def add_json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """--json, the same on every command: the last stdout line becomes one JSON object of `what`."""
    parser.add_argument("--json", action="store_true", help=f"end stdout with one JSON line: {what}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tunelab", description="Tune and compare training methods for image models.")
    parser.add_argument("--version", action="version", version=f"tunelab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train one method once, without Ray")
    train.add_argument("method", choices=_method_names(), metavar="METHOD",
                       help=f"one of: {', '.join(_method_names())}")
    _add_config_options(train)
    train.add_argument("--config", help="YAML file of config values (--set wins over it)")
    train.add_argument("--out", help="folder for metrics.csv and the checkpoint; resumes a run found there")
    add_json_flag(train, "final metrics")

    tune = sub.add_parser("tune", help="search a method's hyperparameters with Ray Tune (Optuna TPE + ASHA)")
    tune.add_argument("method", choices=_method_names(), metavar="METHOD", help=f"one of: {', '.join(_method_names())}")
    add_arguments(tune, TuneOptions)
    add_json_flag(tune, "experiment, best config")

    res = sub.add_parser("resume", help="continue an interrupted `tunelab tune` experiment")
    res.add_argument("experiment", metavar="EXPERIMENT_DIR", help="the experiment: a folder or a URI (file://, s3://, ...)")
    res.add_argument("--resume-errored", action="store_true", help="continue errored trials from their checkpoints")
    res.add_argument("--restart-errored", action="store_true", help="restart errored trials from scratch")
    res.add_argument("--address", help="Ray cluster to join (default: the one the experiment used)")
    res.add_argument("--time-budget", metavar="DURATION",
                     help="end this session cleanly after this wall time (e.g. 90m, 2h); none by default")
    res.add_argument("--optuna-storage", metavar="URL",
                     help="the experiment's Optuna storage again, with the password tunelab does not record")
    res.add_argument("--mlflow", metavar="URI",
                     help="the experiment's MLflow tracking URI again, with the password tunelab does not record")
    add_json_flag(res, "experiment, best config")

    rep = sub.add_parser("report", help="tables, plots and a markdown report of experiments")
    rep.add_argument("experiments", nargs="+", metavar="EXPERIMENT_DIR",
                     help="one or more experiments: folders or URIs (file://, s3://, ...)")
    rep.add_argument("--out", default="report", help="folder for the report (default ./report); never inside an experiment")
    rep.add_argument("--baseline", help="method the others are compared with (default finetune, else the first)")
    add_json_flag(rep, "out, rows, plots")
    rep.add_argument("--raw", action="store_true", help="keep Ray's bookkeeping columns (pid, hostname, ...) in trials.csv")

    best = sub.add_parser("best", help="the best trial's full config with provenance, as YAML")
    best.add_argument("experiment", metavar="EXPERIMENT_DIR", help="the experiment: a folder or a URI (file://, s3://, ...)")
    best.add_argument("--out", help="YAML file to write (default: print to stdout)")
    add_json_flag(best, "the record")

    rpr = sub.add_parser("reproduce", help="retrain a best config with seeds; val and test accuracy")
    rpr.add_argument("config_file", metavar="CONFIG_FILE")
    rpr.add_argument("--seeds", type=int, default=1, help="seeds, the trial's own first (default 1)")
    add_json_flag(rpr, "per-seed and mean metrics")

    cmp_ = sub.add_parser("compare", help="tune every method under one budget, confirm on test, compare")
    add_arguments(cmp_, CompareOptions, track_given=True)
    add_json_flag(cmp_, "rows, one per method")

    pre = sub.add_parser("pretrain", help="produce a backbone offline for fine-tuning (rotation prediction, "
                                          "or task=supervised on source classes)")
    pre.add_argument("--model", help="backbone architecture (default resnet18, width 16)")
    pre.add_argument("--out", help="checkpoint file to write (default pretrained/MODEL-DATASET[-cCLASSES]-TASK.pt)")
    _add_config_options(pre)
    add_json_flag(pre, "checkpoint and metrics")
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tunelab")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"
