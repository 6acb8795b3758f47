"""Property-based tests of every parser and file reader a user's input reaches: for any generated
value or file, the outcome is a result or one ConfigError line (exit 2), never another exception.

Accepted inputs are checked further: a space that loads can be handed to Optuna, a config that
builds holds finite numbers only.
"""
import dataclasses
import json
import math
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.analysis.load import TrialFileError, _read_params
from tunelab.analysis.progress import progress_frame, read_progress_rows
from tunelab.core.record import TUNELAB_FILE, read_record
from tunelab.analysis.reproduce import load_best
from tunelab.search_spaces import SPACES
from tunelab.search_spaces.base import Conditional, settle_conditions
from tunelab.search_spaces.overrides import apply_overrides, load_space_file
from tunelab.trainables import METHOD_CLASSES
from tunelab.trainables.config import build_config, load_config_file, parse_set_options, to_dict
from tunelab.core.errors import TunelabError
from tunelab.experiments import check_name, normalise_storage
from tunelab.searcher import DefineByRun, optuna_distribution

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CONFIG_CLASSES = [m.config_class for m in METHOD_CLASSES.values()]
KEYS = sorted({f.name for cls in CONFIG_CLASSES for f in dataclasses.fields(cls)})

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                          inner, max_size=3),
                      max_leaves=6)
key_names = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
# text that looks like what people type after --set KEY=
typed = st.one_of(st.text(max_size=20), st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "1_000", " 3 ",
                                                          "true", "none", "", "[1,2]", "1,2,,3", "-0", "1e-400"]))


def _finite_numbers(config) -> bool:
    for value in dataclasses.asdict(config).values():
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            return False
    return True


@FUZZ
@given(cls=st.sampled_from(CONFIG_CLASSES), entries=st.dictionaries(key_names, st.one_of(values, typed), max_size=4))
def test_config_values_build_or_are_refused(cls, entries):
    try:
        config = build_config(cls, entries)
    except TunelabError:
        return
    assert _finite_numbers(config)


@FUZZ
@given(pairs=st.lists(st.text(max_size=25), max_size=4))
def test_set_options_parse_or_are_refused(pairs):
    try:
        parsed = parse_set_options(pairs)
    except TunelabError:
        return
    assert all(isinstance(k, str) and k.strip() == k and k for k in parsed)


entry = st.one_of(
    st.none(), values,
    st.fixed_dictionaries({}, optional={"low": scalars, "high": scalars, "log": scalars, "choices": values,
                                        "unit": scalars, "role": st.sampled_from(["scientific", "nuisance", "x"])}))


@FUZZ
@given(method=st.sampled_from(sorted(SPACES)), overrides=st.dictionaries(key_names, entry, max_size=3))
def test_space_overrides_apply_or_are_refused_and_what_loads_can_be_sampled(method, overrides):
    config_class = METHOD_CLASSES[method].config_class
    try:
        space = apply_overrides(dict(SPACES[method]), overrides, config_class)
        space = settle_conditions(space, to_dict(build_config(config_class, {})))  # as the driver does
    except TunelabError:
        return
    for name, entry in space.items():
        cases = [c for _, c in entry.cases if c is not None] if isinstance(entry, Conditional) else [entry]
        for dist in map(optuna_distribution, cases):
            if hasattr(dist, "low"):
                assert math.isfinite(dist.low) and math.isfinite(dist.high) and dist.low <= dist.high, name
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask()
    config = DefineByRun(space)(trial)  # must not raise: a space that loads can be sampled
    build_config(config_class, config)  # and what it samples is a valid config


file_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.builds(lambda v: yaml.safe_dump(v).encode(), st.dictionaries(key_names, values, max_size=4)),
    st.builds(lambda v: json.dumps(v, allow_nan=True).encode(), values),
)


@FUZZ
@given(content=file_bytes)
def test_yaml_readers_read_or_refuse_any_file(tmp_path, content):
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    for reader in (load_config_file, load_space_file, load_best):
        try:
            result = reader(str(path))
        except TunelabError as exc:
            assert "\n" not in str(exc).strip() or len(str(exc).splitlines()) < 3
            continue
        assert isinstance(result, dict)


def _valid_record() -> dict:
    return {"format": 1, "method": "classifier", "dataset": "digits", "experiment": "/x", "name": "x",
            "metric": "val/acc", "mode": "max", "options": {"method": "classifier"}, "fixed": {},
            "search_space": [], "search": {"algorithm": "optuna", "seed": 0},
            "scheduler": {"kind": "asha", "time_attr": "epoch", "max_t": 4, "grace_period": 1, "reduction_factor": 3},
            "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0}, "config_defaults": {}, "command": []}


@FUZZ
@given(field=st.sampled_from(sorted(_valid_record())), value=values, cut=st.integers(0, 2000))
def test_record_reader_reads_or_refuses_damaged_records(tmp_path, field, value, cut):
    record = _valid_record()
    record[field] = value
    text = json.dumps(record, allow_nan=True)
    (tmp_path / TUNELAB_FILE).write_text(text[:cut] if cut < len(text) else text)
    try:
        read_record(tmp_path)
    except TunelabError:
        return


@FUZZ
@given(progress=file_bytes, params=file_bytes)
def test_trial_reader_reads_or_skips_damaged_trial_files(tmp_path, progress, params):
    folder = tmp_path / "classifier_0000abcd"
    folder.mkdir(exist_ok=True)
    (folder / "progress.csv").write_bytes(progress)
    (folder / "params.json").write_bytes(params)
    try:  # what load_experiment does with one trial's files
        rows, parsed = read_progress_rows(folder / "progress.csv"), _read_params(folder / "params.json")
        if rows.rows:
            progress_frame([rows], [folder.name])
    except TrialFileError:
        return
    assert isinstance(parsed, dict)


@FUZZ
@given(name=st.text(max_size=140))
def test_experiment_names_are_one_plain_component_or_refused(name):
    try:
        accepted = check_name(name)
    except TunelabError:
        return
    assert Path(accepted).name == accepted and accepted not in (".", "..") and "/" not in accepted


@FUZZ
@given(storage=st.text(max_size=40))
def test_storage_locations_normalise_or_are_refused(storage):
    try:
        normalise_storage(storage)
    except TunelabError:
        return
    except ValueError as exc:  # e.g. embedded NUL in a path: must not reach the user as a traceback
        pytest.fail(f"{storage!r}: {exc!r}")
