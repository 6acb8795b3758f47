import pytest

from tunelab.search_spaces import SPACES
from tunelab.search_spaces.base import Conditional, FloatRange, IntRange
from tunelab.search_spaces.overrides import apply_overrides, load_space_file
from tunelab.trainables.classifier import ClassifierConfig
from tunelab.core.errors import ConfigError

SPACE = SPACES["classifier"]


def test_narrow_extend_and_drop():
    out = apply_overrides(SPACE, {"lr": {"low": 1e-3, "high": 1e-2}, "optimizer": {"choices": ["sgd", "adamw"]},
                                  "dropout": {"low": 0.0, "high": 0.5}, "label_smoothing": None}, ClassifierConfig)
    assert out["lr"] == FloatRange(1e-3, 1e-2, log=True, unit=SPACE["lr"].unit, reason=SPACE["lr"].reason)
    assert out["optimizer"].options == ("sgd", "adamw")
    assert isinstance(out["dropout"], FloatRange) and out["dropout"].high == 0.5
    assert "label_smoothing" not in out
    assert isinstance(SPACE["lr"], Conditional)  # the method's own space is untouched


def test_int_keys_become_int_ranges():
    out = apply_overrides(SPACE, {"width": {"low": 8, "high": 64, "log": True}}, ClassifierConfig)
    assert out["width"] == IntRange(8, 64, log=True, unit="", reason="from --space")


@pytest.mark.parametrize("entry,message", [
    ({"nosuchkey": {"low": 1, "high": 2}}, "unknown key 'nosuchkey'; valid keys: .*batch_size"),
    ({"lr": {"low": 0.1, "high": 0.01}}, "lr needs low < high, got low=0.1, high=0.01"),
    ({"lr": {"low": 0.1, "high": 0.1}}, "lr needs low < high"),
    ({"lr": {"low": 0.0, "high": 0.1}}, "lr is on a log scale and needs low > 0, got low=0.0"),
    ({"lr": {"low": "small", "high": 0.1}}, "lr.low must be a finite number, got 'small'"),
    ({"lr": {"low": 0.001, "high": 0.1, "log": "yes"}}, "lr.log must be true or false"),
    ({"lr": {"lo": 0.001}}, "lr has unknown field 'lo'; valid fields: low, high"),
    ({"lr": [0.001, 0.1]}, "lr must be a mapping"),
    ({"optimizer": {"choices": ["sgd", "adamm"]}}, "optimizer='adamm' is not valid; choose from: sgd"),
    ({"optimizer": {"choices": []}}, "optimizer.choices must be a non-empty list"),
    ({"batch_size": {"low": 1.5, "high": 8}}, "batch_size.low must be an integer"),
    ({"dropout": {"low": 0.0}}, "dropout needs high"),
    ({"dropout": {"low": 0.0, "high": 1.5}}, r"dropout=1.5 is out of range; allowed: \[0, 1\)"),
    ({"model": {"low": 1, "high": 2}}, "model is a str setting; give it as {choices: \\[...\\]}"),
])
def test_bad_space_files_are_refused_with_one_line(entry, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(SPACE, entry, ClassifierConfig)


def test_space_file_must_be_a_yaml_mapping(tmp_path):
    (tmp_path / "list.yaml").write_text("- lr\n")
    (tmp_path / "broken.yaml").write_text("lr: {low: [\n")
    with pytest.raises(ConfigError, match="must map config keys to ranges"):
        load_space_file(str(tmp_path / "list.yaml"))
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_space_file(str(tmp_path / "broken.yaml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_space_file(str(tmp_path / "missing.yaml"))


CONDITIONAL_YAML = """
lr:
  when: optimizer
  cases:
    sgd: {low: 0.01, high: 0.3, log: true}
    adam: {low: 1.0e-4, high: 1.0e-2, log: true}
    adamw: {low: 1.0e-4, high: 1.0e-2, log: true}
    rmsprop: {low: 1.0e-5, high: 1.0e-3, log: true}
momentum:
  when: optimizer
  cases: {sgd: {low: 0.5, high: 0.99}, rmsprop: null, adam: null, adamw: null}
schedule:
  when: optimizer
  cases: {sgd: {choices: [step, cosine]}, rmsprop: null, adam: {choices: [cosine]}, adamw: null}
"""


def test_a_space_file_declares_conditional_entries_and_the_driver_samples_them(tmp_path):
    import optuna

    from tunelab.search_plan import resolve_space

    from tunelab.tune_options import TuneOptions, fixed_values
    from tunelab.searcher import DefineByRun

    path = tmp_path / "space.yaml"
    path.write_text(CONDITIONAL_YAML)
    opts = TuneOptions("classifier", space=str(path))
    space = resolve_space(opts, fixed_values(opts))
    assert isinstance(space["momentum"], Conditional) and space["momentum"].case("rmsprop") is None
    assert space["lr"].case("rmsprop") == FloatRange(1e-5, 1e-3, log=True, reason="from --space")
    assert space["schedule"].case("sgd").options == ("step", "cosine")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    for _ in range(40):
        config = DefineByRun(space)(study.ask())
        case = space["lr"].case(config["optimizer"])
        assert case.low <= config["lr"] <= case.high
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        assert ("schedule" in config) == (config["optimizer"] in ("sgd", "adam"))
    fixed = TuneOptions("classifier", space=str(path), sets=["optimizer=rmsprop"])
    settled = resolve_space(fixed, fixed_values(fixed))  # the parent fixed: its case, or nothing
    assert settled["lr"] == space["lr"].case("rmsprop") and "momentum" not in settled


@pytest.mark.parametrize("entry, message", [
    ({"when": "lr", "cases": {"sgd": None}}, "lr.when must name another config key"),
    ({"when": "nosuch", "cases": {"sgd": None}}, "lr.when must name another config key"),
    ({"when": "optimizer", "cases": []}, "lr.cases must map each option of optimizer"),
    ({"when": "optimizer", "cases": {"nadam": {"low": 0.1, "high": 0.2}}}, "optimizer='nadam' is not valid"),
    ({"when": "optimizer", "cases": {"sgd": 0.1}}, r"lr.cases.sgd must be a mapping or null"),
    ({"when": "optimizer", "cases": {"sgd": {"low": 0.1, "hi": 0.2}}}, "lr.cases.sgd has unknown field 'hi'"),
    ({"when": "optimizer", "cases": {"sgd": {"low": 0.3, "high": 0.2}}}, "lr needs low < high"),
    ({"when": "optimizer", "cases": {"sgd": None}, "default": 1}, "a conditional entry takes: when, cases"),
])
def test_bad_conditional_entries_are_refused_naming_the_field(entry, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(SPACE, {"lr": entry}, ClassifierConfig)


def test_a_conditional_entry_missing_an_option_of_its_searched_parent_is_refused(tmp_path):
    from tunelab.search_plan import resolve_space
    from tunelab.tune_options import TuneOptions, fixed_values

    path = tmp_path / "space.yaml"
    path.write_text("lr: {when: optimizer, cases: {sgd: {low: 0.01, high: 0.3}}}\n")
    opts = TuneOptions("classifier", space=str(path))
    with pytest.raises(ConfigError, match="lr has a range per optimizer and none for optimizer='adam'"):
        resolve_space(opts, fixed_values(opts))
