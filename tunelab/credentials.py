"""Passwords in `--optuna-storage` and `--mlflow` URIs: used, never kept.

tunelab records and prints such a URI with its password as *** (tunelab.core.redaction.redact). Ray
pickles what it needs to resume (the Optuna searcher with its storage, the MLflow callback with its
URI) into the experiment folder, so those get the URI without its password, and the password goes
to the client's own mechanism in this process instead: PGPASSWORD for PostgreSQL (libpq reads it),
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for an MLflow server over http(s). Other
databases have no such mechanism; their URI is handed over as given (and Ray's state keeps it).

`resume` therefore needs the password again: from that mechanism (PGPASSWORD, ~/.pgpass,
MLFLOW_TRACKING_PASSWORD) or from the option given again (`resume --optuna-storage URL`,
`resume --mlflow URI`); without it, it refuses in one line saying where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

from tunelab.core.redaction import REDACTED, redact, split_password
from tunelab.core.errors import ConfigError


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def _kind(uri: str) -> str | None:
    """'postgres' (libpq's PGPASSWORD and .pgpass), 'http' (MLflow's own variables) or None."""
    scheme = _scheme(uri)
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        return "postgres"
    if scheme in ("http", "https"):
        return "http"
    return None


def hand_over(uri: str | None) -> str | None:
    """The URI to give Optuna or MLflow (and so Ray's pickled state): without its password, which
    goes to the client's own environment variable in this process where the client has one."""
    if uri is None:
        return None
    bare, password = split_password(uri)
    kind = _kind(uri)
    if password is None or kind is None:
        return uri
    if kind == "postgres":
        os.environ["PGPASSWORD"] = unquote(password)
    else:
        user = bare.split("://", 1)[1].split("@", 1)[0]
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return bare


def _has_password_mechanism(kind: str) -> bool:
    if kind == "postgres":
        passfile = Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")
        return bool(os.environ.get("PGPASSWORD")) or passfile.is_file()
    return bool(os.environ.get("MLFLOW_TRACKING_PASSWORD"))


WHERE = {"postgres": "set PGPASSWORD or add it to ~/.pgpass", "http": "set MLFLOW_TRACKING_PASSWORD"}


def for_resume(flag: str, recorded: str | None, given: str | None, experiment: str) -> str | None:
    """The URI a resumed run connects with. `given` (the option again) must be the recorded URI
    up to its password; a recorded password (***) must come from `given` or the client's mechanism."""
    if given is not None:
        if recorded is None:
            raise ConfigError(f"{flag} {redact(given)!r}: experiment {redact(experiment)!r} was made without "
                              f"{flag}; resume it without one")
        if split_password(given)[0] != split_password(recorded)[0]:
            raise ConfigError(f"{flag} {redact(given)!r} is not the one experiment {redact(experiment)!r} "
                              f"was made with ({recorded!r}); give that one, with its password")
        return hand_over(given)
    if recorded is None or f":{REDACTED}@" not in recorded:
        return recorded  # no password was given: the client's mechanism served then and serves now
    kind = _kind(recorded)
    if kind is None or _has_password_mechanism(kind):
        return split_password(recorded)[0] if kind else recorded
    raise ConfigError(f"{flag} {recorded!r}: the password is not recorded (tunelab never writes one down); "
                      f"give it again with `tunelab resume {redact(experiment)} {flag} URL`, this URL with the "
                      f"password in place of {REDACTED}, or {WHERE[kind]}")
