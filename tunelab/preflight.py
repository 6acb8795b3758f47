"""Checks that can be made before any work starts, made then: every refusal is one line, exit 2,
in seconds, not after minutes of data loading, pretraining or Ray starting.

- Tracking and storage URLs: an MLflow URI must have a scheme MLflow knows and its server or
  database must answer within a few seconds (MLflow itself retries an unreachable server for
  minutes, then raises inside Ray's callback). Nothing is written by a probe.
- Relative paths in URLs (`sqlite:///rel.db`, a plain `mlruns` folder) are resolved against the
  folder `tune` runs in and recorded so: `resume` from another folder reaches the same database.
- The experiment lock can be probed (taken and released) without creating the lock file.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from tunelab.core.redaction import redact
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import check_writable_folder

PROBE_TIMEOUT_S = 5.0
# Database URLs MLflow's SQL store accepts (SQLAlchemy dialects) and the port each listens on by default.
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
LOCAL_SCHEMES = ("", "file")
HTTP_PORTS = {"http": 80, "https": 443}
UNPROBED_SCHEMES = ("databricks", "databricks-uc", "uc")  # need their own credentials; MLflow checks them
MLFLOW_SCHEMES = ("a folder", "file://", "sqlite://", *(f"{s}://" for s in (*DATABASE_PORTS, *HTTP_PORTS)),
                  *UNPROBED_SCHEMES)


# ----------------------------------------------------------------------------- relative paths in URLs

def is_sqlite(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"


def absolute_sqlite_url(url: str) -> str:
    """`sqlite:///rel.db` -> `sqlite:////CWD/rel.db`; other URLs (and in-memory databases) as given."""
    if not is_sqlite(url):
        return url
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # malformed: left for the check that names it
        return url
    if not parsed.database or parsed.database == ":memory:" or os.path.isabs(parsed.database):
        return url
    return parsed.set(database=os.path.abspath(os.path.expanduser(parsed.database))).render_as_string(
        hide_password=False)


def absolute_tracking_uri(uri: str | None) -> str | None:
    """An MLflow URI with a relative path made absolute: a plain folder, `file:rel`, `sqlite:///rel.db`."""
    if uri is None or not uri.strip():
        return uri
    scheme = _scheme(uri)
    if scheme == "":
        return os.path.abspath(os.path.expanduser(uri))
    if scheme == "file":
        path = _file_path(uri)
        return uri if os.path.isabs(path) else Path(os.path.abspath(path)).as_uri()
    return absolute_sqlite_url(uri) if scheme == "sqlite" else uri


def check_recorded_paths(record_options: dict, where: str) -> None:
    """`resume`: an experiment recorded before URLs were made absolute may name a relative sqlite
    file; from another folder it would open (or create) another database. Refused when the file
    is not found from here, naming it."""
    for flag, key in (("--optuna-storage", "optuna_storage"), ("--mlflow", "mlflow")):
        url = record_options.get(key)
        if not is_sqlite(url) or absolute_sqlite_url(url) == url:
            continue
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if not os.path.isfile(database):
            raise ConfigError(f"{where} records {flag} {redact(url)!r}, relative to the folder `tune` ran in, and "
                              f"{os.path.abspath(database)!r} does not exist; run `tunelab resume` from that folder")


# ----------------------------------------------------------------------------- MLflow

def _scheme(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    return "" if len(scheme) == 1 else scheme  # C:\... on Windows is a path


def _file_path(uri: str) -> str:
    parts = urlsplit(uri)
    return parts.path if parts.netloc in ("", "localhost") else f"//{parts.netloc}{parts.path}"


def probe_mlflow(uri: str) -> None:
    """Refuse an MLflow tracking URI that is malformed or does not answer, in seconds."""
    shown = f"--mlflow {redact(uri)!r}"
    if any(ord(c) < 32 for c in uri):
        raise ConfigError(f"{shown} holds a control character; give a plain tracking URI")
    scheme = _scheme(uri)
    dialect = scheme.split("+", 1)[0]
    if scheme in LOCAL_SCHEMES:
        check_writable_folder(Path(_file_path(uri) if scheme else uri).expanduser(), "--mlflow", uri)
    elif dialect == "sqlite":
        _check_sqlite_file(shown, uri)
    elif dialect in DATABASE_PORTS:
        from sqlalchemy.engine import make_url

        try:
            url = make_url(uri)
        except Exception:
            raise ConfigError(f"{shown} is not a database URL; e.g. postgresql://USER@HOST:5432/DB") from None
        probe_tcp(shown, url.host or "localhost", url.port or DATABASE_PORTS[dialect])
    elif scheme in HTTP_PORTS:
        parts = urlsplit(uri)
        try:
            port = parts.port or HTTP_PORTS[scheme]
        except ValueError:
            raise ConfigError(f"{shown}: the port is not a number; e.g. http://HOST:5000") from None
        if not parts.hostname:
            raise ConfigError(f"{shown} names no host; e.g. http://HOST:5000")
        probe_tcp(shown, parts.hostname, port)
    elif scheme not in UNPROBED_SCHEMES:
        raise ConfigError(f"{shown}: scheme {scheme!r} is not a tracking URI MLflow knows; choose from: "
                          f"{', '.join(MLFLOW_SCHEMES)}")


def _check_sqlite_file(shown: str, uri: str) -> None:
    from sqlalchemy.engine import make_url

    try:
        database = make_url(uri).database
    except Exception:
        raise ConfigError(f"{shown} is not a database URL; e.g. sqlite:////abs/path/mlflow.db") from None
    if not database or database == ":memory:":
        raise ConfigError(f"{shown} is an in-memory database, gone when the driver ends; give a file, "
                          "e.g. sqlite:///runs/mlflow.db")
    path = Path(database).expanduser()
    if path.exists() and not path.is_file():
        raise ConfigError(f"{shown}: {database!r} is not a file")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"{shown}: {database!r} is not writable")
    if not path.parent.is_dir():  # SQLite makes the file, never its folder
        raise ConfigError(f"{shown}: folder {str(path.parent)!r} does not exist")
    check_writable_folder(path.parent, "--mlflow", uri)


def probe_tcp(shown: str, host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """A connection to host:port within `timeout_s`, else one line (no retries: that is the point)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"{shown}: nothing answered at {host}:{port} within {timeout_s:g} s ({reason}); "
                          "start the server or check the URI") from None


# ----------------------------------------------------------------------------- the experiment lock

def probe_lock(lock_file: Path | None, experiment: str) -> str:
    """Whether the experiment's lock could be taken now, without creating or changing its file:
    an existing lock file is opened read-only, locked and released at once. Returns what was done."""
    if lock_file is None:
        from tunelab.object_store_lease import probe_lease

        return probe_lease(experiment)
    if not lock_file.exists():
        return f"lock {lock_file} is free (not created)"
    if lock_file.is_symlink() or not lock_file.is_file():
        raise ConfigError(f"experiment {experiment!r}: its lock {str(lock_file)!r} is not a plain file; "
                          "it is left as it is, remove it or pick another --name")
    fd = os.open(lock_file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise ConfigError(f"experiment {experiment!r} is in use (lock: {lock_file}); wait for it to end or "
                          "stop it") from None
    finally:
        os.close(fd)  # closing releases the lock
    return f"lock {lock_file} taken and released"
