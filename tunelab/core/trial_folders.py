"""A trial's folder in an experiment: METHOD_TRIALID, written and parsed here only.

Ray names trials by id: 8 hex digits under a searcher (Optuna), or 5 hex digits, `_` and a 5-digit
counter under Ray's own random search (`240d1_00003`), so the id itself may hold a `_`.
"""
from __future__ import annotations

import re

TRIAL_ID = r"(?:[0-9a-f]{8}|[0-9a-f]{5}_[0-9]{5})"


def trial_folder_name(method: str, trial_id: str) -> str:
    """The folder a trial of `method` writes to (Ray's `trial_dirname_creator`)."""
    return f"{method}_{trial_id}"


def trial_folder_pattern(method: str | None = None) -> re.Pattern:
    """What trial folders' names match: of `method`, or of any method."""
    prefix = re.escape(method) if method is not None else r".+?"
    return re.compile(f"(?P<method>{prefix})_(?P<trial_id>{TRIAL_ID})")


def parse_trial_folder_name(name: str, method: str | None = None) -> tuple[str, str] | None:
    """(method, trial id) of a trial folder's name, or None if it is not one. Give `method` where it
    is known: a method name ending in `_` and 5 hex digits would otherwise read ambiguously."""
    match = trial_folder_pattern(method).fullmatch(name)
    return (match["method"], match["trial_id"]) if match else None
