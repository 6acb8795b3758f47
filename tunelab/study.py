"""The Optuna study beside an experiment (`--optuna-storage`): checked before a search starts,
replaced with its experiment under `--overwrite`.

A study belongs to one experiment: tunelab creates it with the user attribute OWNER_ATTR naming
the experiment's resolved location (the folder or URI `tunelab tune` prints), before Ray's search
loads it. A study of the same name that another experiment owns is refused, naming both, with or
without --overwrite: two experiments of one name in different storages would otherwise mix their
trials, or one's --overwrite delete the other's live study. A study with no owner (made outside
tunelab, or by a tunelab before this rule) is never deleted either. And tunelab never creates
Optuna's tables in a database that already holds tables of something else.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.core.storage import experiment_identity
from tunelab.core.redaction import redact
from tunelab.searcher_plugins import searcher_for
from tunelab.core.errors import ConfigError

if TYPE_CHECKING:
    from tunelab.tune_options import TuneOptions


OWNER_ATTR = "tunelab_experiment"
# Tables every Optuna RDB schema has (optuna/storages/_rdb/models.py), whatever its version.
OPTUNA_TABLES = {"studies", "version_info"}


def owner_of(experiment: str) -> str:
    """The experiment's location as ownership compares it: its resolved identity (a local folder's
    real path however it was spelled, a remote URI normalised), the one the lock and reports use;
    a password in it is never stored."""
    return redact(experiment_identity(experiment))


def check_optuna_storage(opts: TuneOptions, name: str, experiment: str) -> None:
    """Refuse an Optuna storage that cannot hold this search, before anything starts or is written.

    The URL must parse, name a dialect SQLAlchemy can load (its driver installed), and reach its
    database: a sqlite file in an existing folder, a server that accepts a connection; one that holds
    tables but no Optuna schema is refused. A study of the experiment's name already there is
    refused unless it is this experiment's own and --overwrite replaces both (a rerun would
    otherwise add its trials to the old ones, and TPE would learn from results whose experiment is
    gone). Random search records no study, so the two together are refused.
    """
    url_text = opts.optuna_storage
    if not url_text:
        return
    if not searcher_for(opts.search).keeps_an_optuna_study:
        raise ConfigError(f"--optuna-storage records an Optuna study, which --search {opts.search} does not use; "
                          "drop --optuna-storage or use --search optuna")
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = f"--optuna-storage {redact(url_text)!r}"
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
        engine.dispose()
        raise ConfigError(f"{shown}: the database cannot be opened ({str(exc).splitlines()[0][:200]})") from None
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())  # reads the catalogue, creates nothing
    except Exception as exc:  # e.g. a sqlite "file is not a database"
        raise ConfigError(f"{shown} is not an Optuna storage ({str(exc).splitlines()[0][:200]})") from None
    finally:
        engine.dispose()
    if tables and not OPTUNA_TABLES <= tables:
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(f"{shown} holds tables of another application ({listed}) and no Optuna schema; tunelab "
                          "creates no tables there: give a new file, e.g. sqlite:///runs/study.db")
    study = _studies(url_text).get(name)
    if study is not None:
        _check_owner(shown, name, study, experiment, opts.overwrite)


def _check_owner(shown: str, name: str, study: Any, experiment: str, overwrite: bool) -> None:
    owner, experiment = study.user_attrs.get(OWNER_ATTR), owner_of(experiment)
    if owner is None:
        raise ConfigError(f"{shown} already holds a study named {name!r} that no tunelab experiment owns (made "
                          "outside tunelab or by an older version); tunelab leaves it, even under --overwrite: "
                          "pick another --name, or delete it yourself (optuna delete-study)")
    if owner != experiment:
        raise ConfigError(f"{shown}: study {name!r} belongs to experiment {owner!r}, not to this one "
                          f"({experiment!r}); pick another --name or another --optuna-storage")
    if not overwrite:
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


def _studies(url: str) -> dict[str, Any]:
    """Study name -> summary (with its user attributes) of an Optuna storage."""
    import optuna

    try:
        return {s.study_name: s for s in optuna.get_all_study_summaries(storage=url, include_best_trial=False)}
    except Exception as exc:  # a file that is not an Optuna database, a schema of another version
        raise ConfigError(f"--optuna-storage {redact(url)!r} is not an Optuna storage "
                          f"({str(exc).splitlines()[0][:200]})") from None


def replace_study(opts: TuneOptions, name: str, experiment: str) -> None:
    """--overwrite: the study of the replaced experiment goes with it (said on stderr); checked again
    under the lock, so only this experiment's own study is ever deleted."""
    if not opts.optuna_storage or not opts.overwrite:
        return
    study = _studies(opts.optuna_storage).get(name)
    if study is None:
        return
    _check_owner(f"--optuna-storage {redact(opts.optuna_storage)!r}", name, study, experiment, overwrite=True)
    import optuna

    optuna.delete_study(study_name=name, storage=opts.optuna_storage)
    print(f"tunelab: --overwrite: deleted study {name!r} of {owner_of(experiment)} from {redact(opts.optuna_storage)}",
          file=sys.stderr)


def claim_study(opts: TuneOptions, name: str, experiment: str) -> None:
    """Create this experiment's study, owned by it, before Ray's Optuna search loads it by name."""
    if not opts.optuna_storage:
        return
    import optuna

    try:
        study = optuna.create_study(storage=opts.optuna_storage, study_name=name,
                                    direction="maximize" if opts.mode == "max" else "minimize")
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"--optuna-storage {redact(opts.optuna_storage)!r}: a study named {name!r} appeared there "
                          "since the check (another run?); pick another --name") from None
    study.set_user_attr(OWNER_ATTR, owner_of(experiment))


def check_resumed_study(url: str | None, name: str, experiment: str) -> None:
    """`resume`: the study the search continues must be this experiment's (or one made before owners
    were recorded); another experiment's study of the same name is refused, naming both."""
    if not url:
        return
    study = _studies(url).get(name)
    owner = study.user_attrs.get(OWNER_ATTR) if study is not None else None
    if owner not in (None, owner_of(experiment)):
        raise ConfigError(f"--optuna-storage {redact(url)!r}: study {name!r} belongs to experiment {owner!r}, not to "
                          f"this one ({owner_of(experiment)!r}); resuming would mix their trials")
