"""A compare's progress, kept in its --out folder so that the same command run again continues it.

OUT/compare.json holds the options the run was made with and each search that finished (its
summary, keyed by method, or `replicate-r/METHOD` with --replicates > 1); OUT/confirmations.jsonl
one line per finished confirmation run (with its `replicate` when there are several). A rerun with the same
options keeps those, resumes an interrupted search from its experiment (Ray Tune's own state),
starts again a search that was stopped before its first trial, and runs only the confirmations
that are missing. A rerun with other options is refused, naming the first option that differs:
mixing two comparisons in one report would be silently wrong.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import atomic_write_text, read_json_lines
from tunelab.options import flag_of

STATE_FILE = "compare.json"
CONFIRMATIONS_FILE = "confirmations.jsonl"
STATE_FORMAT = 1
# Where a run happens may change between sessions (another cluster); what it computes may not.
NOT_COMPARED = ("out", "address", "dry_run")  # where and how it runs, not what it computes


def options_record(opts: Any) -> dict[str, Any]:
    """The options that decide a compare's results, as JSON values. --storage is kept as the
    location it names (`./x` and `x/` are one) without its credentials: a compare continued with
    another storage would not find its searches."""
    record = {f.name: json.loads(json.dumps(getattr(opts, f.name))) for f in dataclasses.fields(opts)
              if f.name not in NOT_COMPARED}
    if record.get("storage") is not None:
        from tunelab.core.redaction import redact
        from tunelab.core.storage import experiment_identity
        from tunelab.experiments import normalise_storage

        record["storage"] = redact(experiment_identity(normalise_storage(record["storage"])))
    return record


def check_new_storage(storage: str | None) -> None:
    """A new compare's --storage must hold nothing yet: a search found there would be continued as
    this compare's own (another compare's, made with other options, or someone else's files)."""
    if storage is None:  # OUT/runs: --out is new or empty (open_state)
        return
    from tunelab.core.redaction import redact
    from tunelab.core.storage import local_path
    from tunelab.experiments import normalise_storage

    location = normalise_storage(storage)
    local = local_path(location)
    if local is not None and (local.is_file() or local.is_symlink() and not local.is_dir()):
        raise ConfigError(f"--storage {redact(storage)!r} is a file, not a folder; give a folder or a URI")
    if holds_anything(location):
        raise ConfigError(f"--storage {redact(storage)!r} is not empty; a new compare's searches need a location of "
                          "their own (its contents are kept): choose another, or continue the compare that made "
                          "it with its own --out")


def holds_anything(location: str) -> bool:
    """Whether a normalised storage location holds a file or object (a missing one holds none)."""
    from tunelab.core.storage import local_path

    local = local_path(location)
    if local is not None:
        return local.is_symlink() or local.is_file() or (local.is_dir() and any(local.iterdir()))
    from tunelab.remote_experiments import stored_files

    return bool(stored_files(location)[2])


def open_state(out: Path, opts: Any) -> dict[str, Any]:
    """The state of the compare in `out` when it is one made with these options, else a fresh
    state for an empty or new `out`. Writes nothing."""
    path = out / STATE_FILE
    if path.is_file() and not path.is_symlink():
        state = _read(path)
        _check_same_options(out, opts, state["options"], unbound_storage(state))
        return state
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {str(out)!r} already exists and is not empty and holds no compare to continue "
                          f"(no {STATE_FILE}); choose another folder (its contents are kept)")
    return {"format": STATE_FORMAT, "options": options_record(opts), "searches": {}}


def _read(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{str(path)!r} cannot be read as a compare's state ({exc}); choose another --out") from None
    if (not isinstance(state, dict) or state.get("format") != STATE_FORMAT
            or not isinstance(state.get("options"), dict) or not isinstance(state.get("searches"), dict)):
        raise ConfigError(f"{str(path)!r} is not a compare state of this tunelab (format {STATE_FORMAT}); "
                          "choose another --out")
    return state


# What a compare made before an option existed did, where that is not the option's default today
# (--replicates came with 1 as its default, which later became 2).
BEFORE_THE_OPTION: dict[str, Any] = {"replicates": 1}


def unbound_storage(state: dict[str, Any]) -> bool:
    """Whether the compare's --storage may still change: no search finished and its recorded
    location holds nothing (a first run that failed before its first search, say on a storage it
    could not write). A location recorded without its password cannot be looked at: not free."""
    recorded = state["options"].get("storage")
    if state["searches"] or recorded is None or "***" in recorded:
        return False
    try:
        return not holds_anything(recorded)
    except ConfigError:  # unreachable now: it may hold the searches
        return False


def _check_same_options(out: Path, opts: Any, recorded: dict[str, Any], storage_free: bool = False) -> None:
    now = options_record(opts)
    if storage_free:
        recorded["storage"] = now.get("storage")  # kept when the state is next saved
    for field in dataclasses.fields(opts):
        # an option added after that compare was made counts as what compare did before it
        was = (recorded[field.name] if field.name in recorded
               else BEFORE_THE_OPTION.get(field.name, _as_json(field.default)))
        if field.name in now and was != now[field.name]:
            flag, given = flag_of(field), now[field.name]
            made = (f"without {flag}, not with {flag} {_shown(given)}" if was is None else
                    f"with {flag} {_shown(was)}, not without it" if given is None else
                    f"with {flag} {_shown(was)}, not {_shown(given)}")
            raise ConfigError(f"--out {str(out)!r} holds a compare made {made}; run it again with the same options "
                              "to continue it, or choose another --out")


def _as_json(value: Any) -> Any:
    return None if value is dataclasses.MISSING else json.loads(json.dumps(value))  # a tuple as a list


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if value is None or value == "" else str(value)


def save_state(out: Path, state: dict[str, Any]) -> None:
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def search_done(out: Path, state: dict[str, Any], method: str, summary: dict[str, Any]) -> None:
    """Record a finished search (one that was not interrupted): a rerun keeps it."""
    state["searches"][method] = {"experiment": summary["experiment"], "dataset": summary["dataset"],
                                 "best_metric": summary.get("best_metric")}
    save_state(out, state)


def how_to_continue(experiment: str) -> str:
    """'resume' when Ray Tune saved the experiment's state (an interrupted search), 'restart' when
    its folder holds a tunelab record but no Tune state (stopped before the first trial), else
    'start'."""
    from tunelab.core.record import TUNELAB_FILE
    from tunelab.core.storage import local_path

    local = local_path(experiment)
    if local is None:
        from tunelab.remote_experiments import stored_files

        if TUNELAB_FILE not in stored_files(experiment)[2]:
            return "start"
    elif not (local / TUNELAB_FILE).is_file():
        return "start"
    from ray import tune

    return "resume" if tune.Tuner.can_restore(str(local) if local is not None else experiment) else "restart"


def read_confirmations(out: Path) -> list[dict[str, Any]]:
    """The confirmation runs already finished; a line the kill cut short is dropped (it runs again)."""
    path = out / CONFIRMATIONS_FILE
    return [] if path.is_symlink() else read_json_lines(path)


def add_confirmation(out: Path, rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Keep one finished confirmation run (the whole file rewritten and renamed: never a half line)."""
    rows.append(row)
    atomic_write_text(out / CONFIRMATIONS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
