"""The experiment record's schema is derived from its type, and what the driver builds fits it."""
from __future__ import annotations

import dataclasses
import json

import pytest

from tunelab.core.errors import ConfigError
from tunelab.core.record import (FINAL_STATUSES, NESTED, OPTIONAL, SCHEMA, ExperimentRecord, SchedulerRecord,
                                 read_record, write_record)


def _built(tmp_path) -> dict:
    from tunelab.search_spaces import space_for
    from tunelab.summaries import experiment_record
    from tunelab.tune_options import TuneOptions

    opts = TuneOptions(method="classifier", optuna_storage="postgresql://u:secret@h/db")
    fixed = {"epochs": 1, "seed": 0, "device": "cpu", "threads": 1}
    return experiment_record(opts, "x", str(tmp_path / "x"), fixed, dict(space_for("classifier")), ["tune"])


def test_every_field_of_the_type_is_in_the_schema_and_nothing_else():
    names = {f.name for f in dataclasses.fields(ExperimentRecord)}
    assert set(SCHEMA) | set(OPTIONAL) == names
    assert FINAL_STATUSES in OPTIONAL
    assert set(NESTED["scheduler"]) == {f.name for f in dataclasses.fields(SchedulerRecord)}
    assert SCHEMA["scheduler"] == (dict,) and OPTIONAL["git_commit"] == (str, type(None))


def test_the_record_the_driver_builds_is_the_type_written_and_read_back(tmp_path):
    record = _built(tmp_path)
    assert list(record) == [f.name for f in dataclasses.fields(ExperimentRecord) if f.name != FINAL_STATUSES]
    assert record["search"]["optuna_storage"] == "postgresql://u:***@h/db"  # built redacted
    write_record(tmp_path / "x", record)
    assert read_record(tmp_path / "x") == json.loads(json.dumps(record))


@pytest.mark.parametrize("path, value, message", [
    (("scheduler", "max_t"), "4", "field 'scheduler.max_t' must be int"),
    (("resources", "cpus_per_trial"), None, "field 'resources.cpus_per_trial' must be int or float"),
    (("format",), 1.5, "field 'format' must be int"),
    (("created",), None, "field 'created' must be str"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(tmp_path, path, value, message):
    record = _built(tmp_path)
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "tunelab.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=message):
        read_record(tmp_path / "x")
