"""The `tunelab` command line (a fixed contract: scripts depend on it).

Bad input exits with code 2 and one line naming the value and the valid choices; no traceback.
With --json the last line of stdout is one JSON object; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Sequence

from tunelab.core.redaction import redact
from tunelab.core.statuses import TrialStatus
from tunelab.core import metrics as M
from tunelab.core.errors import ConfigError, TunelabError
from tunelab.compare_options import CompareOptions
from tunelab.cli_parser import build_parser
from tunelab.options import from_args, given
from tunelab.tune_options import TuneOptions
from tunelab.parallel import SearchFailed, stop_when_orphaned
from tunelab.core.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED



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
        from tunelab.core.record import check_not_in_an_experiment

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

    from tunelab.core.record import check_not_in_an_experiment
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
