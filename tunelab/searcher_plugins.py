"""The searchers behind `tunelab tune --search NAME`: a small protocol and a registry.

A searcher is one module in `tunelab/searchers/` that defines `SEARCHER`, an object with the attributes and
methods of `Searcher`; `REGISTERED` maps its `--search` name to that module. Adding one is that
module and one line here. The command line checks names from `REGISTERED` alone (nothing is
imported until a search is built), and every registered searcher runs through a tiny tune, kill
and resume in tests/tunelab/test_searchers_contract.py.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tunelab.search_spaces.base import SearchSpace
    from tunelab.tune_options import TuneOptions

REGISTERED: dict[str, str] = {  # --search NAME -> the module defining SEARCHER
    "optuna": "tunelab.searchers.tpe",
    "random": "tunelab.searchers.random_search",
    "optuna-stock": "tunelab.searchers.optuna_stock",
}


class Searcher(Protocol):
    name: str
    keeps_an_optuna_study: bool  # takes --optuna-storage and --startup-trials; resume checks the study

    def describe(self, opts: TuneOptions) -> str:
        """One line for the `--dry-run` plan."""

    def build(self, opts: TuneOptions, space: SearchSpace, study_name: str) -> tuple[Any, dict[str, Any], Any]:
        """(Ray Tune search algorithm, param_space entries it does not sample itself, scheduler)."""

    def restored_param_space(self, opts: TuneOptions, record: dict[str, Any], path: str) -> dict[str, Any] | None:
        """The param_space `Tuner.restore` needs to go on sampling (None if the search algorithm
        samples itself and Ray restores it from its own state)."""

    def rebuild(self, search_alg: Any, trials: list) -> bool:
        """Rebuild the search algorithm's state from the trials on disk after its snapshot was cut
        short or lost (a killed driver); False if it cannot, and `resume` refuses in one line."""

    def add_to_snapshot(self, search_alg: Any, snapshot: Path, trials: list) -> bool:
        """Restore the searcher's snapshot file into `search_alg` and add the trials of `trials` it
        lacks (ones Ray created after its last snapshot, ended on disk), their results and ends
        included; the caller saves it. False if this searcher cannot: Ray then starts a new trial
        in each one's place."""


def searcher_for(name: str) -> Searcher:
    """The registered searcher called `name` (checked by the command line before this)."""
    return importlib.import_module(REGISTERED[name]).SEARCHER
