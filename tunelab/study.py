"""The Optuna study beside an experiment (`--optuna-storage`): checked before a search starts,
replaced with its experiment under `--overwrite`."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.record import redact
from trainables.errors import ConfigError

if TYPE_CHECKING:
    from tunelab.driver import TuneOptions


def check_optuna_storage(opts: TuneOptions, name: str) -> None:
    """Refuse an Optuna storage that cannot hold this search, before anything starts or is written.

    The URL must parse, name a dialect SQLAlchemy can load (its driver installed), and reach its
    database: a sqlite file in an existing folder, a server that accepts a connection. A study of
    the experiment's name already there is refused unless --overwrite replaces both (a rerun
    would otherwise add its trials to the old ones, and TPE would learn from results whose
    experiment is gone). Random search records no study, so the two together are refused.
    """
    url_text = opts.optuna_storage
    if not url_text:
        return
    if opts.search != "optuna":
        raise ConfigError(f"--optuna-storage records an Optuna study, which --search {opts.search} does not use; "
                          "drop --optuna-storage or use --search optuna")
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = f"--optuna-storage {url_text!r}"
    try:
        url = make_url(url_text)
        engine = sqlalchemy.create_engine(url)
    except (sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(f"{shown}: dialect {url.get_backend_name()!r} cannot be used here ({exc}); "
                          "e.g. sqlite:///runs/study.db, or install the database driver") from None
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"{shown} is not a database URL; e.g. sqlite:///runs/study.db") from None
    if url.get_backend_name() == "sqlite":
        _check_sqlite_file(shown, url.database)
        if not url.database or url.database == ":memory:" or not Path(url.database).exists():
            return  # a new file: no study there yet
    try:
        with engine.connect():
            pass
    except Exception as exc:  # any driver's connection error
        raise ConfigError(f"{shown}: the database cannot be opened ({str(exc).splitlines()[0][:200]})") from None
    if not opts.overwrite and name in _study_names(url_text):
        raise ConfigError(f"{shown} already holds a study named {name!r}; pick another --name, pass --overwrite "
                          "to replace the experiment and its study, or delete it (optuna delete-study)")


def check_reconnect(url: str | None, experiment: str) -> None:
    """`resume`: a PostgreSQL study must accept the password found again (tunelab.credentials)
    before Ray starts; a refusal says where to put it."""
    if not url or not url.split("://", 1)[0].lower().startswith("postgres"):
        return
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(url).connect():
            pass
    except Exception as exc:  # any driver's connection error
        raise ConfigError(f"--optuna-storage {redact(url)!r}: the study's database refused the connection "
                          f"({str(exc).strip().splitlines()[0][:200]}); give the password with `tunelab resume "
                          f"{redact(experiment)} --optuna-storage URL`, this URL with its password, or set "
                          "PGPASSWORD or add it to ~/.pgpass") from None


def _check_sqlite_file(shown: str, database: str | None) -> None:
    if not database or database == ":memory:":
        raise ConfigError(f"{shown} is an in-memory database, gone when the driver ends; give a file, "
                          "e.g. sqlite:///runs/study.db")
    path = Path(database)
    if path.exists() and not path.is_file():
        raise ConfigError(f"{shown}: {database!r} is not a file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{shown}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{shown}: {database!r} is not writable")


def _study_names(url: str) -> list[str]:
    import optuna

    try:
        return [s.study_name for s in optuna.get_all_study_summaries(storage=url, include_best_trial=False)]
    except Exception as exc:  # a file that is not an Optuna database, a schema of another version
        raise ConfigError(f"--optuna-storage {url!r} is not an Optuna storage "
                          f"({str(exc).splitlines()[0][:200]})") from None


def replace_study(opts: TuneOptions, name: str) -> None:
    """--overwrite: the study of the replaced experiment goes with it (said on stderr)."""
    if not opts.optuna_storage or not opts.overwrite or name not in _study_names(opts.optuna_storage):
        return
    import optuna

    optuna.delete_study(study_name=name, storage=opts.optuna_storage)
    print(f"tunelab: --overwrite: deleted study {name!r} from {redact(opts.optuna_storage)}", file=sys.stderr)
