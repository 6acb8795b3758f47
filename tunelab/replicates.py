"""`compare --replicates R`: the whole pipeline R times, the methods paired within each replicate.

Seeds under one data draw and one search measure only the training seed's noise; a rerun of the
same compare with another draw or another search outcome can land outside their interval.
Replicate r repeats everything that varies: its data draw (`split_seed=r`: the validation split
and the `train_per_class` training images), its search (seed `--seed + r * --seeds`) and its
confirmation seeds (that seed and the next `--seeds - 1`, so no two replicates share a
confirmation seed). Every method of replicate r trains on the same images: the methods are paired
within a replicate. The test split does not depend on `split_seed`: every replicate is tested on
the same images.

The source backbone is pretrained once, on labelled images of classes disjoint from the target's,
so it has seen no target image of any split and serves every replicate (`tunelab.compare`
refuses overlapping classes; `--source-classes ''` makes one rotation backbone per replicate,
from that replicate's own training images, through `pretrained=auto`).

Layout with R > 1 (with R = 1 none of it appears: experiments stay OUT/runs/METHOD):
OUT/runs/replicate-r/METHOD (one experiment per replicate and method), OUT/logs/replicate-r/
(--parallel), confirmation rows with a `replicate` field, and compare's state keyed
`replicate-r/METHOD`. This module only names things: it imports nothing heavy.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunelab.core.errors import ConfigError

# Each replicate is a whole compare (searches, seeds, a data load per search even in --dry-run):
# past 100 a count is a typo, not a plan, and it would run for days before anything said so.
MAX_REPLICATES = 100
RANGE = f"a whole number from 1 to {MAX_REPLICATES}"


def parse_replicates(text: str) -> int:
    """`--replicates`' argparse type: a whole number >= 1, else one line naming the value and the range."""
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; allowed: {RANGE}") from None
    if not 1 <= value <= MAX_REPLICATES:
        raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {RANGE}")
    return value


def check_replicates(count: Any) -> None:
    """The same rule for options built in Python rather than parsed."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPLICATES:
        raise ConfigError(f"--replicates {count!r} is out of range; allowed: {RANGE}")


def replicated(opts: Any) -> bool:
    return opts.replicates > 1


def folder(replicate: int) -> str:
    return f"replicate-{replicate}"


def storage(out: Path, opts: Any, replicate: int) -> str:
    """Where replicate `replicate`'s experiments go, a path or URI: --storage (default OUT/runs)
    itself when there is one replicate, else its replicate-R folder."""
    from tunelab.core.storage import join_uri
    from tunelab.experiments import normalise_storage

    base = normalise_storage(opts.storage) if opts.storage is not None else (out / "runs").resolve().as_uri()
    return join_uri(base, folder(replicate)) if replicated(opts) else base


def logs(out: Path, opts: Any, replicate: int) -> Path:
    return out / "logs" / folder(replicate) if replicated(opts) else out / "logs"


def search_key(opts: Any, method: str, replicate: int) -> str:
    """A search's key in compare's state (and the name its lines carry): the method alone with one replicate."""
    return f"{folder(replicate)}/{method}" if replicated(opts) else method


def search_seed(opts: Any, replicate: int) -> int:
    """The search's seed, which is also its trials' seed and the first confirmation seed: replicates
    `--seeds` apart, so the confirmation seeds of two replicates never coincide."""
    return opts.seed + replicate * opts.seeds


def data_sets(opts: Any, replicate: int) -> list[str]:
    """The --set values that give a replicate its own data draw (none with one replicate: unchanged)."""
    return [f"split_seed={replicate}"] if replicated(opts) else []


def describe(opts: Any, replicate: int) -> str:
    return (f"replicate {replicate + 1}/{opts.replicates}: data draw split_seed={replicate}, "
            f"search seed {search_seed(opts, replicate)}, confirmation seeds {search_seed(opts, replicate)}.."
            f"{search_seed(opts, replicate) + opts.seeds - 1}")
