"""The `tunelab` command line (CONTRACT in DESIGN.md).

Bad input exits with code 2 and one line naming the value and the valid choices; no traceback.
With --json the last line of stdout is one JSON object; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from trainables.errors import ConfigError, TunelabError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line (no usage block) with exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _method_names() -> list[str]:
    from trainables import METHOD_CLASSES

    return list(METHOD_CLASSES)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="digits (default), cifar10, cifar100 or imagefolder:PATH")
    p.add_argument("--data-dir", help="folder holding the dataset files (or set TUNELAB_DATA_DIR)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value; repeatable (e.g. --set lr=0.01 --set model=resnet18)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tunelab", description="Tune and compare training methods for image models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train one method once, without Ray")
    train.add_argument("method", choices=_method_names(), metavar="METHOD",
                       help=f"one of: {', '.join(_method_names())}")
    _add_config_options(train)
    train.add_argument("--config", help="YAML file of config values (--set wins over it)")
    train.add_argument("--out", help="folder for metrics.csv and the checkpoint; resumes a run found there")
    train.add_argument("--json", action="store_true", help="end stdout with one JSON line of final metrics")

    pre = sub.add_parser("pretrain", help="produce a backbone offline for fine-tuning (rotation prediction)")
    pre.add_argument("--model", help="backbone architecture (default resnet18, width 16)")
    pre.add_argument("--out", help="checkpoint file to write (default pretrained/MODEL-DATASET-TASK.pt)")
    _add_config_options(pre)
    pre.add_argument("--json", action="store_true", help="end stdout with one JSON line: checkpoint and metrics")
    return parser


def gather_config_values(args: argparse.Namespace) -> dict[str, Any]:
    """Config values from --config, then --dataset/--data-dir, then --set (later wins)."""
    from trainables.config import load_config_file, parse_set_options

    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    if args.dataset:
        values["dataset"] = args.dataset
    if args.data_dir:
        values["data_dir"] = args.data_dir
    values.update(parse_set_options(args.set))
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from trainables import get_method
    from trainables.config import build_config, to_dict
    from trainables.engine import train
    from trainables.reporting import LocalReporter, dumps, json_ready

    method = get_method(args.method)
    config = build_config(method.config_class, gather_config_values(args))
    reporter = LocalReporter(args.out, to_dict(config), total_epochs=config.epochs)
    metrics = train(method, config, reporter) or (reporter.history[-1] if reporter.history else {})
    if args.json:
        print(dumps(json_ready({"method": args.method, **metrics})))
    else:
        shown = {k: v for k, v in metrics.items() if k.startswith("val/")}
        print(f"{args.method} on {config.dataset}: " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainables.config import build_config
    from trainables.pretrained import PretrainConfig, pretrain
    from trainables.reporting import dumps, json_ready

    values = gather_config_values(args)
    if args.model:
        values["model"] = args.model
    config = build_config(PretrainConfig, values)
    dataset = config.dataset.replace("/", "_").replace(":", "_")
    out = Path(args.out or f"pretrained/{config.model}-{dataset}-{config.task}.pt")
    if out.exists():
        raise ConfigError(f"--out {str(out)!r} already exists; choose another file (it is kept as it is)")
    metrics = pretrain(config, out)
    summary = {"checkpoint": str(out), "task": config.task, "model": config.model, **metrics}
    if args.json:
        print(dumps(json_ready(summary)))
    else:
        print(f"pretrained {config.model} on {config.task} ({config.dataset} train split): "
              f"val/acc {metrics['val/acc']:.4f} -> {out}")
    return 0


COMMANDS = {"train": cmd_train, "pretrain": cmd_pretrain}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TunelabError as exc:
        message = " ".join(str(exc).split())
        print(f"tunelab: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("tunelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
