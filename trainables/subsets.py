"""Class subsets and low-data targets, for every dataset: config keys `classes` and `train_per_class`.

Both are applied to a loaded dataset after its train / val / test splits are carved, so the val
and test images of a subset run are exactly the full run's val and test images of those classes,
whatever the subset or the number of training images kept. Labels are re-indexed 0..K-1 in the
order of the original ids; the original ids stay in `bundle.meta["classes"]`.

A source / target transfer task is two disjoint subsets of one dataset: pretrain on `classes=0-4`,
fine-tune on `classes=5-9 train_per_class=20` (see tunelab.trainables.pretrained's leak guard).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
import re

from tunelab.core.errors import ConfigError, DataError

if TYPE_CHECKING:  # numpy and torch load only where images are subset: the command line parses classes
    import numpy as np
    import torch

_TOKEN = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
# No dataset tunelab reads has this many classes; a larger id is refused before any range is expanded
# (classes=0-1000000 once built a million-entry list and compared it with itself: minutes).
MAX_CLASS_ID = 99_999


def parse_classes(spec: str) -> tuple[int, ...]:
    """`"5-9"` -> (5, 6, 7, 8, 9); `"1,3,5"` -> (1, 3, 5); `""` -> () meaning every class.

    Ids are sorted; a repeated id, a reversed range, an id above MAX_CLASS_ID or fewer than two
    classes are refused (a classifier needs two). Whether the ids exist is checked against the
    dataset (`check_ids`). Time and memory are linear in the length of `spec`: ranges are checked
    as pairs and expanded only once they are known to be valid (at most MAX_CLASS_ID + 1 ids)."""
    if not spec.strip():
        return ()
    ranges = sorted(_parse_range(spec, token) for token in spec.split(","))
    reach = -1
    for low, _high in ranges:  # sorted by low: a range starting inside an earlier one repeats its first id
        if low <= reach:
            raise ConfigError(f"classes={_shown(spec)} names class {low} twice; name each class once")
        reach = max(reach, _high)
    count = sum(high - low + 1 for low, high in ranges)
    if count < 2:
        raise ConfigError(f"classes={_shown(spec)} keeps {count} class; classification needs at least 2")
    return tuple(i for low, high in ranges for i in range(low, high + 1))


def _shown(spec: str) -> str:
    """The spec as an error message quotes it: whole when short, its start when long (one short line)."""
    return repr(spec) if len(spec) <= 200 else repr(spec[:200]) + "..."


def _parse_range(spec: str, token: str) -> tuple[int, int]:
    match = _TOKEN.match(token)
    if match is None:
        raise ConfigError(f"classes={_shown(spec)}: {token.strip()[:50]!r} is not a class id or range; "
                          "write ids and ranges, e.g. classes=5-9 or classes=1,3,5")
    # leading zeros dropped and the length compared first: int() of a 5000-digit id raises
    digits = [d.lstrip("0") or "0" for d in (match.group(1), match.group(2) or match.group(1))]
    too_large = [d for d in digits if len(d) > len(str(MAX_CLASS_ID)) or int(d) > MAX_CLASS_ID]
    if too_large:
        shown = too_large[0] if len(too_large[0]) <= 20 else too_large[0][:20] + "..."
        raise ConfigError(f"classes={_shown(spec)}: class {shown} is out of range; allowed: class ids 0-{MAX_CLASS_ID}")
    low, high = int(digits[0]), int(digits[1])
    if high < low:
        raise ConfigError(f"classes={_shown(spec)}: range {low}-{high} is reversed; write {high}-{low}")
    return low, high


def shared_classes(source: tuple[int, ...], target: tuple[int, ...]) -> str | None:
    """The class ids two `classes` subsets share, as text ('all' when either means every class), or None."""
    if not source or not target:
        return ", ".join(map(str, source or target)) or "all"
    common = sorted(set(source) & set(target))
    return ", ".join(map(str, common)) if common else None


def check_ids(spec: str, ids: tuple[int, ...], dataset: str, num_classes: int) -> None:
    unknown = [i for i in ids if i >= num_classes]
    if unknown:
        raise DataError(f"classes={_shown(spec)}: class {unknown[0]} is not in {dataset}; "
                        f"its class ids are 0-{num_classes - 1}")


def keep_classes(split, ids: tuple[int, ...]):
    """The split's images of classes `ids`, labels re-indexed to 0..len(ids)-1 in that order."""
    import torch

    new_label = torch.full((int(split.labels.max()) + 1 if len(split) else 1,), -1, dtype=torch.int64)
    known = torch.as_tensor([i for i in ids if i < len(new_label)], dtype=torch.int64)
    new_label[known] = torch.as_tensor([ids.index(int(i)) for i in known], dtype=torch.int64)
    labels = new_label[split.labels.cpu()]
    keep = torch.nonzero(labels >= 0).flatten()
    return take(split, keep, labels[keep])


def take(split, index: torch.Tensor, labels: torch.Tensor):
    """A copy of `split` holding the images at `index`, with `labels`."""
    if hasattr(split, "images"):
        return dataclasses.replace(split, images=split.images[index.to(split.images.device)].contiguous(),
                                   labels=labels.to(split.labels.device))
    return dataclasses.replace(split, paths=[split.paths[i] for i in index.tolist()], labels=labels)


def per_class_index(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of `n` images of every class, drawn with `seed` (stratified), in their original order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def check_per_class(n: int, labels: np.ndarray, class_names: list[str]) -> None:
    import numpy as np

    counts = np.bincount(labels, minlength=len(class_names))
    smallest = int(np.argmin(counts))
    if n > counts[smallest]:
        raise DataError(f"train_per_class={n} is more than class {class_names[smallest]!r} has "
                        f"({counts[smallest]} training images after val and test are carved); "
                        f"allowed: 0 (all) to {counts[smallest]}")


def subset_sizes(bundle) -> dict[str, int]:
    return {"train": len(bundle.train), "val": len(bundle.val), "test": len(bundle.test)}
