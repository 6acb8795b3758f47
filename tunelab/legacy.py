"""Experiments recorded before tunelab 0.2 name its packages by their old top-level names.

tunelab 0.1 installed `trainables`, `search_spaces` and `analysis` at the top of site-packages, and
Ray's pickled state of its experiments (tuner.pkl, the searcher's state) names classes such as
`search_spaces.base.Choice`. While such an experiment is checked and restored, those names are
the modules now under `tunelab.`; afterwards they are what they were before (nothing, or another
package of that name).
"""
from __future__ import annotations

import contextlib
import importlib
import pkgutil
import sys
from typing import Any, Iterator

RENAMED = ("trainables", "search_spaces", "analysis")  # top-level in 0.1, under tunelab. since 0.2
FIRST_VERSION_WITHOUT_THEM = (0, 2)


def recorded_before_the_rename(record: dict[str, Any]) -> bool:
    """Whether the record was written by a tunelab that pickled the old top-level names."""
    version = str(record.get("packages", {}).get("tunelab", "0"))
    try:
        parts = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False  # a development version string: made by this layout
    return parts < FIRST_VERSION_WITHOUT_THEM


def _modules_of(package_name: str) -> dict[str, Any]:
    """Every module of a tunelab subpackage, imported, by its old top-level name."""
    package = importlib.import_module(f"tunelab.{package_name}")
    modules = {package_name: package}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"tunelab.{package_name}."):
        modules[info.name[len("tunelab."):]] = importlib.import_module(info.name)
    return modules


@contextlib.contextmanager
def old_package_names(record: dict[str, Any]) -> Iterator[None]:
    """The 0.1 names resolve to tunelab's modules for as long as this lasts, if the record needs it."""
    if not recorded_before_the_rename(record):
        yield
        return
    aliases = {old: module for package in RENAMED for old, module in _modules_of(package).items()}
    saved = {name: sys.modules.get(name) for name in aliases}
    sys.modules.update(aliases)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
