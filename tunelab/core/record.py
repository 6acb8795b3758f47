"""The experiment record, `tunelab.json`: its one owner (type, schema, reading, writing).

The driver writes it at the root of every experiment; `resume`, `report`, `best` and the loader
read it. Its shape is the type below (`ExperimentRecord` and the nested records): the schema every
read and every write is checked against is derived from those fields, so a field is added in one
place. A record with a missing key, an unknown key or a value of the wrong type is refused in one
line naming the file and the field, instead of failing later with a KeyError deep inside a
command. Readers get the checked record as plain JSON data (a dict), as it is on disk.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tunelab.core.errors import ConfigError
from tunelab.core.files import atomic_write_text
from tunelab.core.redaction import redact, redact_all
from tunelab.core.storage import local_path, read_text, remote_filesystem

TUNELAB_FILE = "tunelab.json"
FINAL_STATUSES = "final_statuses"  # trial_id -> status, written by the driver when a run ends
FORMAT = 1
MODES = ("max", "min")


@dataclass
class SchedulerRecord:
    kind: str  # asha | fifo
    max_t: int  # epochs at full budget
    grace_period: int
    reduction_factor: int
    time_attr: str


@dataclass
class SearchRecord:
    algorithm: str  # the --search name
    seed: int
    startup_trials: Optional[int] = None
    optuna_storage: Optional[str] = None  # redacted


@dataclass
class ResourcesRecord:
    cpus_per_trial: float
    gpus_per_trial: float
    threads_per_trial: Optional[int] = None


@dataclass
class ExperimentRecord:
    """tunelab.json. Fields without a default are required; nested records are written as objects."""

    format: int
    method: str
    dataset: str
    experiment: str  # where it was written (redacted)
    name: str
    metric: str
    mode: str
    options: dict  # the search's options (TuneOptions), as given
    fixed: dict  # config values every trial shares
    search_space: list  # `describe` rows of the space
    search: SearchRecord
    scheduler: SchedulerRecord
    resources: ResourcesRecord
    config_defaults: dict
    command: list
    # provenance (tunelab.provenance.environment_record), absent from records written by hand
    created: Optional[str] = None
    git_commit: Optional[str] = None
    packages: Optional[dict] = None
    python: Optional[str] = None
    platform: Optional[str] = None
    torch_threads: Optional[int] = None
    cuda: Optional[str] = None
    final_statuses: Optional[dict] = None  # FINAL_STATUSES: written when the run ends

    def to_json(self) -> dict[str, Any]:
        """The record as written: None-valued optional fields left out, except those that may be null."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if v is not None or k in NULLABLE}


NULLABLE = ("git_commit", "cuda")  # null has a meaning there: no git checkout, no CUDA


def _accepted(hint: Any) -> tuple:
    """The JSON types a field of type `hint` accepts (an int where a float is asked; null if Optional)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return (*_accepted(inner[0]), type(None))
    if dataclasses.is_dataclass(hint):
        return (dict,)
    return (int, float) if hint is float else (hint,)


def _schema(cls: type) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(required fields, optional fields) of a record type: field name -> accepted JSON types."""
    hints = typing.get_type_hints(cls)
    required, optional = {}, {}
    for f in dataclasses.fields(cls):
        accepted = _accepted(hints[f.name])
        if f.default is dataclasses.MISSING:
            required[f.name] = accepted
        else:
            # an optional field present must hold a value, except where null means something
            optional[f.name] = accepted if f.name in NULLABLE else tuple(t for t in accepted if t is not type(None))
    return required, optional


SCHEMA, OPTIONAL = _schema(ExperimentRecord)
# Nested objects: the fields every reader relies on (others may be there: they are not checked).
NESTED: dict[str, dict[str, tuple]] = {
    f.name: _schema(typing.get_type_hints(ExperimentRecord)[f.name])[0]
    for f in dataclasses.fields(ExperimentRecord) if dataclasses.is_dataclass(typing.get_type_hints(ExperimentRecord)[f.name])
}


# ----------------------------------------------------------------------------- experiments on disk

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
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        raise ConfigError(f"{redact(str(location))!r} is not a tunelab experiment (no readable {TUNELAB_FILE}); "
                          "pass a folder made by `tunelab tune`, e.g. runs/NAME") from None
    except OSError as exc:  # on object storage: the store did not answer, or refused the request
        if local_path(location) is not None:
            raise ConfigError(f"{str(location)!r} is not a tunelab experiment (no readable {TUNELAB_FILE}); "
                              "pass a folder made by `tunelab tune`, e.g. runs/NAME") from None
        raise ConfigError(f"{redact(str(location))!r}: {TUNELAB_FILE} cannot be read from the store "
                          f"({redact(str(exc).splitlines()[0])[:300]}); check its endpoint and credentials") from None
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
    for key, accepted in SCHEMA.items():
        if key not in record:
            raise ConfigError(f"{shown!r} lacks the field {key!r}; it is not a complete tunelab record")
        _check_type(shown, key, record[key], accepted)
    for key, value in record.items():
        if key in OPTIONAL:
            _check_type(shown, key, value, OPTIONAL[key])
        elif key not in SCHEMA:
            raise ConfigError(f"{shown!r} has an unknown field {key!r}; valid fields: "
                              f"{', '.join([*SCHEMA, *OPTIONAL])}")
    for key, fields in NESTED.items():
        for field, accepted in fields.items():
            if field not in record[key]:
                raise ConfigError(f"{shown!r} lacks the field '{key}.{field}'")
            _check_type(shown, f"{key}.{field}", record[key][field], accepted)
    if record["mode"] not in MODES:
        raise ConfigError(f"{shown!r}: field 'mode' is {record['mode']!r}; valid: {', '.join(MODES)}")
    if record["scheduler"]["max_t"] < 1:
        raise ConfigError(f"{shown!r}: field 'scheduler.max_t' is {record['scheduler']['max_t']}; allowed: >= 1")
    for trial_id, status in record.get(FINAL_STATUSES, {}).items():
        if not isinstance(status, str):
            raise ConfigError(f"{shown!r}: field '{FINAL_STATUSES}.{trial_id}' must be a status name, got {status!r}")


def _check_type(shown: str, field: str, value: Any, accepted: tuple) -> None:
    wrong = not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted)
    if not wrong and isinstance(value, float) and not math.isfinite(value):
        wrong = True
    if wrong:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
        raise ConfigError(f"{shown!r}: field {field!r} must be {names}, got {value!r}"[:300])


# ----------------------------------------------------------------------------- writing

def write_record(location: str | Path, record: dict[str, Any]) -> None:
    """Write the record atomically (local) or in one stream (remote URI)."""
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
