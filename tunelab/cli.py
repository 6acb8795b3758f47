"""The `tunelab` command line (a fixed contract: scripts depend on it).

Bad input exits with code 2 and one line naming the value and the valid choices; no traceback.
With --json the last line of stdout is one JSON object; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Sequence

from tunelab.analysis.record import redact
from tunelab.core.statuses import TrialStatus
from tunelab.trainables import metrics as M
from tunelab.trainables.errors import ConfigError, TunelabError
from tunelab.compare_options import CompareOptions
from tunelab.options import add_arguments, from_args, given
from tunelab.tune_options import TuneOptions
from tunelab.parallel import SearchFailed, stop_when_orphaned
from tunelab.core.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED



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


def _config_values(path: str, method: str | None) -> dict[str, Any]:
    """A --config file: a mapping of config keys, or a file `tunelab best` wrote (its `config`)."""
    from tunelab.analysis.reproduce import BEST_KEYS, load_best
    from tunelab.trainables.config import load_config_file

    values = load_config_file(path)
    if "config" in values and set(values) <= set(BEST_KEYS):
        record = load_best(path)  # checked field by field
        if method is not None and record["method"] != method:
            raise ConfigError(f"--config {path!r} is the best config of method {record['method']!r}, not {method!r}; "
                              f"run `tunelab train {record['method']} --config {path}`")
        return record["config"]
    return values


def gather_config_values(args: argparse.Namespace) -> dict[str, Any]:
    """Config values from --config, then --dataset/--data-dir, then --set (later wins)."""
    from tunelab.trainables.config import parse_set_options

    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(_config_values(args.config, getattr(args, "method", None)))
    if args.dataset:
        values["dataset"] = args.dataset
    if args.data_dir:
        values["data_dir"] = args.data_dir
    values.update(parse_set_options(args.set))
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from tunelab.trainables import config_class
    from tunelab.trainables.config import build_config, to_dict

    config = build_config(config_class(args.method), gather_config_values(args))  # refused before torch loads
    from tunelab.trainables import get_method
    from tunelab.trainables.engine import train
    from tunelab.trainables.fileio import dumps, json_ready
    from tunelab.trainables.reporting import LocalReporter

    if args.out is not None:
        from tunelab.analysis.record import check_not_in_an_experiment

        check_not_in_an_experiment(args.out, "folder")
    method = get_method(args.method)
    reporter = LocalReporter(args.out, to_dict(config), total_epochs=config.epochs)
    metrics = train(method, config, reporter) or (reporter.history[-1] if reporter.history else {})
    if args.json:
        print(dumps(json_ready({"method": args.method, **metrics})))
    else:
        shown = {k: v for k, v in metrics.items() if M.on_split(k, "val")}
        print(f"{args.method} on {config.dataset}: " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from tunelab.trainables.config import build_config
    from tunelab.trainables.pretrain import PretrainConfig, pretrain
    from tunelab.trainables.backbone_cache import file_safe
    from tunelab.trainables.fileio import check_output_path, dumps, json_ready

    values = gather_config_values(args)
    if args.model:
        values["model"] = args.model
    config = build_config(PretrainConfig, values)
    subset = f"-c{config.classes.replace(' ', '')}" if config.classes else ""
    out = check_output_path(args.out if args.out is not None else
                            f"pretrained/{config.model}-{file_safe(config.dataset)}{subset}-{config.task}.pt",
                            "--out", "file")
    if out.exists():
        raise ConfigError(f"--out {str(out)!r} already exists; choose another file (it is kept as it is)")
    metrics = pretrain(config, out)
    summary = {"checkpoint": str(out), "task": config.task, "model": config.model, **metrics}
    if args.json:
        print(dumps(json_ready(summary)))
    else:
        classes = f" classes {config.classes}" if config.classes else ""
        print(f"pretrained {config.model} on {config.task} ({config.dataset}{classes} train split): "
              f"{M.VAL_ACC} {metrics[M.VAL_ACC]:.4f} -> {out}")
    return 0


def _print_tune_summary(summary: dict[str, Any], as_json: bool) -> None:
    from tunelab.trainables.fileio import dumps

    if as_json:
        print(dumps(summary))
        return
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["statuses"].items()))
    best = summary["best_metric"]
    print(f"{summary['experiment']}: {summary['trials']} trials ({counts}); best {summary['metric']} "
          f"{best:.4f} (trial {summary['best_trial']})" if best is not None else
          f"{summary['experiment']}: {summary['trials']} trials ({counts}); no trial reported {summary['metric']}")


def _search_outcome(summary: dict[str, Any]) -> int:
    """Exit code of a finished `tune`/`resume`: 130 interrupted, 1 when no trial produced a result."""
    if summary.get("interrupted"):
        left = summary["statuses"].get(TrialStatus.INCOMPLETE, 0)
        print(f"tunelab: interrupted with {left} trial(s) incomplete; continue with "
              f"`tunelab resume {summary['experiment']}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary.get("out_of_time"):
        left = summary["statuses"].get(TrialStatus.OUT_OF_TIME, 0)
        print(f"tunelab: time budget spent with {left} trial(s) out_of_time (checkpointed); continue with "
              f"`tunelab resume {summary['experiment']} --time-budget DURATION`", file=sys.stderr)
    if summary["best_metric"] is None:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["statuses"].items()))
        where = f"; first error: {summary['error_files'][0]}" if summary.get("error_files") else ""
        print(f"tunelab: error: no trial produced a result ({counts}){where}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from tunelab.tune_options import check_config_values

    opts = from_args(TuneOptions, args)
    check_config_values(opts)  # refused before torch, Ray and pandas load
    from tunelab.trainables.phases import mark
    from tunelab.driver import run_tune

    mark("driver_imported")

    if opts.dry_run:
        return _print_dry_run("tune", {"dry_run": opts}, args.json)
    summary = run_tune(opts, argv=sys.argv[1:])
    _print_tune_summary(summary, args.json)
    return _search_outcome(summary)


def _print_dry_run(command: str, result: dict[str, Any], as_json: bool) -> int:
    """--dry-run: the checks have passed (a refusal raised before here); say what would run."""
    from tunelab.trainables.fileio import dumps
    from tunelab import dryrun

    if command == "tune":
        plan = dryrun.plan_tune(result["dry_run"])
        dryrun.print_tune_plan(plan)
    else:
        plan = result["dry_run"]
        dryrun.print_compare_plan(plan)
    if as_json:
        print(dumps({"dry_run": True, **plan}))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from tunelab.driver import resume

    summary = resume(args.experiment, resume_errored=args.resume_errored, restart_errored=args.restart_errored,
                     address=args.address, time_budget=args.time_budget,
                     optuna_storage=args.optuna_storage, mlflow=args.mlflow)
    _print_tune_summary(summary, args.json)
    return _search_outcome(summary)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tunelab")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _rows(table) -> list[dict[str, Any]]:
    """A comparison table as JSON-ready rows (missing values as null)."""
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def cmd_report(args: argparse.Namespace) -> int:
    from tunelab.analysis.report import write_report
    from tunelab.analysis.tables import format_table
    from tunelab.trainables.fileio import dumps

    result = write_report(args.experiments, args.out, baseline=args.baseline, raw=args.raw)
    print(format_table(result["table"]))
    print(f"report: {result['out']}/report.md ({len(result['plots'])} plots)")
    if args.json:
        print(dumps({"out": result["out"], "rows": _rows(result["table"]), "plots": result["plots"]}))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    import yaml

    from tunelab.analysis.record import check_not_in_an_experiment
    from tunelab.analysis.reproduce import best_record, write_best
    from tunelab.trainables.fileio import check_output_path, dumps

    if args.out is not None:
        check_output_path(args.out, "--out", "file")  # before the experiment is read
    record = best_record(args.experiment)
    if args.out:
        check_not_in_an_experiment(args.out)
    if args.out:
        write_best(record, args.out)
        p = record["provenance"]
        print(f"{args.out}: trial {p['trial_id']} epoch {p['epoch']} {p['metric']} {p['value']:.4f}")
    elif not args.json:
        print(yaml.safe_dump(record, sort_keys=False), end="")
    if args.json:
        print(dumps(record))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from tunelab.analysis.reproduce import load_best, reproduce
    from tunelab.trainables.fileio import dumps, json_ready

    result = reproduce(load_best(args.config_file), args.seeds,
                       say=lambda text: print(f"[tunelab reproduce] {text}", file=sys.stderr, flush=True))
    exact = ("reproduces the recorded {m} {v:.6f} exactly" if result["reproduced_exactly"] else
             "does NOT reproduce the recorded {m} {v} exactly (other machine, threads or library versions?)")
    if result["recorded"] is not None:
        print(f"seed {result['seeds'][0]['seed']} " + exact.format(m=M.VAL_ACC, v=result["recorded"]), file=sys.stderr)
    if args.json:
        print(dumps({**json_ready({k: v for k, v in result.items() if k != "seeds"}),
                     "seeds": [json_ready(s) for s in result["seeds"]]}))
    else:
        print(f"{result['method']}: {M.VAL_ACC} {result['val_acc_mean']:.4f} +- {result['val_acc_std']:.4f}, "
              f"{M.TEST_ACC} {result['test_acc_mean']:.4f} +- {result['test_acc_std']:.4f} over {len(result['seeds'])} seeds")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tunelab.compare_options import check_options, parse_methods, with_preset

    methods = parse_methods(args.methods)
    opts = with_preset(from_args(CompareOptions, args, methods=methods), given(args))
    check_options(opts)  # refused before torch, Ray and pandas load
    from tunelab.analysis.tables import format_table
    from tunelab.trainables.fileio import dumps
    from tunelab.compare import run_compare

    result = run_compare(opts)
    if "dry_run" in result:
        return _print_dry_run("compare", result, args.json)
    print(format_table(result["table"]))
    mode = "in parallel" if result["parallel"] else "one after another"
    print(f"report: {result['report']}  ({result['wall_s']:.0f} s; the searches {result['searches_s']:.0f} s, "
          f"{mode})")
    if args.json:
        print(dumps({"out": result["out"], "rows": _rows(result["table"]), "wall_s": result["wall_s"],
                     "searches_s": result["searches_s"], "phases_s": result["phases_s"], "parallel": result["parallel"],
                     "experiments": result["experiments"]}))
    return 0


COMMANDS = {"train": cmd_train, "tune": cmd_tune, "resume": cmd_resume, "report": cmd_report, "best": cmd_best,
            "reproduce": cmd_reproduce, "compare": cmd_compare, "pretrain": cmd_pretrain}


def main(argv: Sequence[str] | None = None) -> int:
    from tunelab.trainables.phases import mark

    mark("cli_main")  # the interpreter and this module loaded (benchmarks/overhead.py)
    args = build_parser().parse_args(argv)
    from tunelab.signals import route_sigterm_to_sigint

    previous = route_sigterm_to_sigint()
    stop_when_orphaned()
    try:
        return COMMANDS[args.command](args)
    except TunelabError as exc:
        message = " ".join(str(exc).split())
        print(f"tunelab: error: {redact(message)}", file=sys.stderr)  # a URI's password never shows
        return EXIT_BAD_INPUT
    except SearchFailed as exc:
        print(f"tunelab: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("tunelab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
