import pytest

from search_spaces import SPACES
from search_spaces.base import Conditional, FloatRange, IntRange
from search_spaces.overrides import apply_overrides, load_space_file
from trainables.classifier import ClassifierConfig
from trainables.errors import ConfigError

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
