"""The experiment record, `tunelab.json`: its one owner (name, schema, reading, writing).

The driver writes it at the root of every experiment; `resume`, `report`, `best` and the loader
read it. An experiment may live in a local folder, at a `file://` URI or at any URI pyarrow's
filesystems resolve (Ray's storage layer), so reading and writing go through one helper that
handles both. Every read is checked against SCHEMA: a record with a missing key, an unknown key
or a value of the wrong type is refused in one line naming the file and the field, instead of
failing later with a KeyError deep inside a command.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tunelab.trainables.errors import ConfigError

TUNELAB_FILE = "tunelab.json"
FINAL_STATUSES = "final_statuses"  # trial_id -> status, written by the driver when a run ends
FORMAT = 1

# key -> accepted types. Nested mappings list the keys every reader relies on.
_TEXT, _INT, _NUMBER, _MAP, _LIST = (str,), (int,), (int, float), (dict,), (list,)
SCHEMA: dict[str, tuple] = {
    "format": _INT, "method": _TEXT, "dataset": _TEXT, "experiment": _TEXT, "name": _TEXT,
    "metric": _TEXT, "mode": _TEXT, "options": _MAP, "fixed": _MAP, "search_space": _LIST, "search": _MAP,
    "scheduler": _MAP, "resources": _MAP, "config_defaults": _MAP, "command": _LIST,
}
OPTIONAL: dict[str, tuple] = {
    "created": _TEXT, "git_commit": (str, type(None)), "packages": _MAP, "python": _TEXT, "platform": _TEXT,
    "torch_threads": _INT, "cuda": (str, type(None)), FINAL_STATUSES: _MAP,
}
NESTED: dict[str, dict[str, tuple]] = {
    "scheduler": {"kind": _TEXT, "max_t": _INT, "grace_period": _INT, "reduction_factor": _INT, "time_attr": _TEXT},
    "search": {"algorithm": _TEXT, "seed": _INT},
    "resources": {"cpus_per_trial": _NUMBER, "gpus_per_trial": _NUMBER},
}
MODES = ("max", "min")


# ----------------------------------------------------------------------------- locations

def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


# ----------------------------------------------------------------------------- secrets in URIs
# A storage or tracking URI may carry a password (postgresql://user:PASSWORD@host/db,
# s3://KEY:SECRET@bucket/runs, http://user:PASSWORD@host) or a secret query parameter
# (?password=..., ?X-Amz-Signature=...). Everything tunelab prints or records goes through
# `redact`: output, errors, tunelab.json, reports, progress lines, the lock's holder record.
REDACTED = "***"
# scheme://USER:PASSWORD@...: the password runs to the last '@' before any blank or quote (a secret
# key may hold an unencoded '/'), so a user name never holds ':' '/' or '@'.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s'\"@:]*):(?P<password>[^\s'\"]*)@")
_SECRET_QUERY = re.compile(r"(?P<name>[?&;][^=&#\s'\"]*?(?:password|passwd|pwd|secret|token|signature|credential"
                           r"|api_?key)[^=&#\s'\"]*=)(?P<value>[^&#\s'\"]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` (a URI, a message, a command line) with every password and secret query value
    shown as ***; the user name, host, path and the rest stay readable."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{REDACTED if m['password'] else ''}@", text)
    return _SECRET_QUERY.sub(lambda m: m["name"] + (m["value"] and REDACTED), text)


def redact_all(value: Any) -> Any:
    """A JSON-like value (a record, a command line) with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_all(item) for item in value)
    return value


def split_password(uri: str) -> tuple[str, str | None]:
    """(the URI without the password in its user info, the password or None). A password shown as
    *** (a recorded URI) counts as none: it was never kept."""
    match = _USERINFO.match(uri)
    if match is None:
        return uri, None
    bare = f"{match['head']}@{uri[match.end():]}"
    password = match["password"]
    return bare, (password if password and password != REDACTED else None)


def join_uri(location: str, *parts: str) -> str:
    """`location` (a path or URI) with `parts` appended to its path; a URI's query
    (s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http) stays at the end."""
    base, question, query = str(location).partition("?")
    joined = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return joined + question + query


def local_path(location: str | Path) -> Path | None:
    """The local folder behind a plain path or a file:// URI; None for a remote URI (s3://, gs://, ...)."""
    text = str(location)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    return None if is_uri(text) else Path(text)


def experiment_identity(location: str | Path) -> str:
    """What an experiment is, however it was spelled: the real absolute path of a local folder or
    `file://` URI (`x`, `./x/`, a symlink to x and file:///.../x are one experiment), or the normalised
    URI of an object store (scheme in lower case, no empty or `.` path segments, no trailing `/`,
    query parameters sorted). The lock, `report` and the other places that ask "same experiment?"
    compare these."""
    local = local_path(location)
    if local is not None:
        return os.path.realpath(local)
    parts = urlsplit(str(location))
    segments = [s for s in parts.path.split("/") if s not in ("", ".")]
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)), safe=":/,@")
    # written out rather than by urlunsplit, which drops the '//' of an empty authority
    # (local:///x -> local:/x, a URI pyarrow no longer reads)
    path = "/" + "/".join(segments) if segments else ""
    return f"{parts.scheme.lower()}://{parts.netloc}{path}" + (f"?{query}" if query else "")


def remote_filesystem(location: str, flag: str = ""):
    """(pyarrow filesystem, path inside it) of a remote URI; a URI pyarrow cannot resolve is bad input."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:  # pyarrow raises ArrowInvalid, ValueError or OSError depending on the scheme
        shown = f"{flag} {redact(location)!r}".strip()
        raise ConfigError(f"{shown} is not a location pyarrow can open: {redact(str(exc).splitlines()[0])}; "
                          "e.g. s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http&region=REGION "
                          "(query options: region, scheme, endpoint_override, allow_bucket_creation, "
                          "allow_bucket_deletion)") from None


def read_text(location: str | Path, name: str) -> str:
    """The text of file `name` inside the experiment at `location` (folder or URI)."""
    local = local_path(location)
    if local is not None:
        return (local / name).read_text(encoding="utf-8")
    fs, root = remote_filesystem(str(location))
    with fs.open_input_stream(f"{root.rstrip('/')}/{name}") as handle:
        return handle.read().decode("utf-8")


def is_experiment(folder: Path) -> bool:
    """A local folder holding a tunelab record (what `--overwrite` may delete, what reports never enter)."""
    try:
        return (folder / TUNELAB_FILE).is_file() and not folder.is_symlink()
    except OSError:  # a name too long to be a folder is no experiment (its own check says what is wrong)
        return False


def enclosing_experiments(resolved: Path) -> list[Path]:
    """The experiment folders `resolved` is, or lies inside, the innermost first."""
    return [p for p in (resolved, *resolved.parents) if is_experiment(p)]


def check_not_in_an_experiment(out: str | Path, what: str = "file") -> None:
    """An --out (`best`'s file, `train`'s folder) never inside an experiment folder: tunelab never
    writes into one, except the search that owns it."""
    inside = enclosing_experiments(Path(out).resolve())
    if inside:
        raise ConfigError(f"--out {str(out)!r} is inside experiment {str(inside[0])!r}; tunelab never writes "
                          f"into an experiment folder, choose a {what} outside it")


# ----------------------------------------------------------------------------- reading

def read_record(location: str | Path) -> dict[str, Any]:
    """The checked record of the experiment at `location` (a folder, file:// URI or pyarrow URI)."""
    shown = f"{str(location).rstrip('/')}/{TUNELAB_FILE}"
    try:
        text = read_text(location, TUNELAB_FILE)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, OSError):
        raise ConfigError(f"{str(location)!r} is not a tunelab experiment (no readable {TUNELAB_FILE}); "
                          "pass a folder made by `tunelab tune`, e.g. runs/NAME") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown!r} is not UTF-8 text; it is not a record tunelab wrote") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{shown!r} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                          "the file is truncated or was edited") from None
    check_record(record, shown)
    return record


def check_record(record: Any, shown: str) -> None:
    """Raise a one-line ConfigError naming `shown` and the field unless `record` fits SCHEMA."""
    if not isinstance(record, dict):
        raise ConfigError(f"{shown!r} must hold a JSON object, got {type(record).__name__}")
    for key, types in SCHEMA.items():
        if key not in record:
            raise ConfigError(f"{shown!r} lacks the field {key!r}; it is not a complete tunelab record")
        _check_type(shown, key, record[key], types)
    for key, value in record.items():
        if key in OPTIONAL:
            _check_type(shown, key, value, OPTIONAL[key])
        elif key not in SCHEMA:
            raise ConfigError(f"{shown!r} has an unknown field {key!r}; valid fields: "
                              f"{', '.join([*SCHEMA, *OPTIONAL])}")
    for key, fields in NESTED.items():
        for field, types in fields.items():
            if field not in record[key]:
                raise ConfigError(f"{shown!r} lacks the field '{key}.{field}'")
            _check_type(shown, f"{key}.{field}", record[key][field], types)
    if record["mode"] not in MODES:
        raise ConfigError(f"{shown!r}: field 'mode' is {record['mode']!r}; valid: {', '.join(MODES)}")
    if record["scheduler"]["max_t"] < 1:
        raise ConfigError(f"{shown!r}: field 'scheduler.max_t' is {record['scheduler']['max_t']}; allowed: >= 1")
    for trial_id, status in record.get(FINAL_STATUSES, {}).items():
        if not isinstance(status, str):
            raise ConfigError(f"{shown!r}: field '{FINAL_STATUSES}.{trial_id}' must be a status name, got {status!r}")


def _check_type(shown: str, field: str, value: Any, types: tuple) -> None:
    wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
    if not wrong and isinstance(value, float) and not math.isfinite(value):
        wrong = True
    if wrong:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ConfigError(f"{shown!r}: field {field!r} must be {names}, got {value!r}"[:300])


# ----------------------------------------------------------------------------- writing

def write_record(location: str | Path, record: dict[str, Any]) -> None:
    """Write the record atomically (local) or in one stream (remote URI)."""
    from tunelab.trainables.fileio import atomic_write_text

    record = redact_all(record)  # a password in a storage or tracking URI is never written down
    check_record(record, f"{redact(str(location))}/{TUNELAB_FILE}")  # never write what a reader would refuse
    text = json.dumps(record, indent=2, sort_keys=False, default=str)
    local = local_path(location)
    if local is not None:
        atomic_write_text(local / TUNELAB_FILE, text)
        return
    fs, root = remote_filesystem(str(location))
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root.rstrip('/')}/{TUNELAB_FILE}") as handle:
        handle.write(text.encode("utf-8"))
