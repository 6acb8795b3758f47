"""Class subsets and low-data targets (`classes`, `train_per_class`) on every dataset kind, and the
backbone leak guard across class subsets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import write_cifar10, write_image_folder
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.data import load_dataset
from tunelab.core.errors import ConfigError, DataError
from tunelab.trainables.subsets import parse_classes


def _rows(split) -> set[tuple]:
    """Each image of a split as a hashable row with its (original) label, to compare splits as sets."""
    return {(bytes(img.numpy().tobytes()), int(lab)) for img, lab in zip(split.images, split.labels)}


def _check_subset(full, sub, ids, per_class):
    """val and test are exactly the full run's images of `ids`, labels re-indexed in id order;
    train holds `per_class` images of each class (all when 0), all from the full train split."""
    back = {new: old for new, old in enumerate(ids)}
    assert sub.class_names == [full.class_names[i] for i in ids]
    assert sub.meta.get("classes", list(range(full.num_classes))) == list(ids)
    for name in ("val", "test"):
        full_split, sub_split = getattr(full, name), getattr(sub, name)
        wanted = {(img, lab) for img, lab in _rows(full_split) if lab in ids}
        got = {(img, back[lab]) for img, lab in _rows(sub_split)}
        assert got == wanted and len(sub_split) == sum(int((full_split.labels == i).sum()) for i in ids)
    train = {(img, back[lab]) for img, lab in _rows(sub.train)}
    assert train <= _rows(full.train)
    counts = torch.bincount(sub.train.labels, minlength=len(ids)).tolist()
    if per_class:
        assert counts == [per_class] * len(ids)  # stratified: every class exactly N
    else:
        assert counts == [int((full.train.labels == i).sum()) for i in ids]
    assert (sub.mean, sub.std) == (full.mean, full.std)  # one pixel scale for every subset of a dataset


@pytest.mark.parametrize("classes, ids", [("5-9", (5, 6, 7, 8, 9)), ("1,3,5", (1, 3, 5)), ("8, 2", (2, 8)),
                                          ("", tuple(range(10)))])
@pytest.mark.parametrize("per_class", [0, 7])
def test_digits_subsets_keep_val_and_test_and_draw_n_per_class(classes, ids, per_class):
    full = load_dataset(DataOptions())
    sub = load_dataset(DataOptions(classes=classes, train_per_class=per_class))
    _check_subset(full, sub, ids, per_class)


def test_per_class_draw_is_seeded_by_split_seed_and_nested_in_nothing_else():
    a = load_dataset(DataOptions(classes="5-9", train_per_class=10))
    b = load_dataset(DataOptions(classes="5-9", train_per_class=10))
    c = load_dataset(DataOptions(classes="5-9", train_per_class=10, split_seed=1))
    assert torch.equal(a.train.images, b.train.images) and not torch.equal(a.train.images, c.train.images)


def test_cifar_subsets(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py", n_train_per_batch=40, n_test=30)
    full = load_dataset(DataOptions(dataset="cifar10", data_dir=str(tmp_path)))
    sub = load_dataset(DataOptions(dataset="cifar10", data_dir=str(tmp_path), classes="5-9", train_per_class=3))
    _check_subset(full, sub, (5, 6, 7, 8, 9), 3)
    assert sub.class_names == ["dog", "frog", "horse", "ship", "truck"]


def test_image_folder_subsets(tmp_path):
    write_image_folder(tmp_path / "pets", {"cat": 12, "dog": 12, "fox": 12, "owl": 12}, size=8)
    options = dict(dataset=f"imagefolder:{tmp_path / 'pets'}", image_size=8)
    full = load_dataset(DataOptions(**options))
    sub = load_dataset(DataOptions(**options, classes="1,3", train_per_class=4))
    _check_subset(full, sub, (1, 3), 4)
    assert sub.class_names == ["dog", "owl"]


def test_streamed_image_folder_subsets_filter_paths(tmp_path):
    write_image_folder(tmp_path / "pets", {"cat": 12, "dog": 12, "fox": 12}, size=8)
    sub = load_dataset(DataOptions(dataset=f"imagefolder:{tmp_path / 'pets'}", image_size=8, classes="0,2",
                                   train_per_class=2, max_memory_mb=0))
    assert all("/dog/" not in p for p in sub.train.paths + sub.val.paths + sub.test.paths)
    assert sorted(sub.train.labels.tolist()) == [0, 0, 1, 1] and len(sub.train.paths) == 4


@pytest.mark.parametrize("options, message", [
    (dict(classes="5-12"), r"classes='5-12': class 10 is not in digits; its class ids are 0-9"),
    (dict(classes="5-9", train_per_class=500), r"train_per_class=500 is more than class '\d' has \(\d+ training "
                                               r"images after val and test are carved\); allowed: 0 \(all\) to \d+"),
])
def test_impossible_subsets_are_refused_naming_the_value(options, message):
    with pytest.raises(DataError, match=message):
        load_dataset(DataOptions(**options))


@pytest.mark.parametrize("spec, message", [
    ("9-5", "range 9-5 is reversed; write 5-9"), ("1,1", "names class 1 twice"), ("3", "keeps 1 class"),
    ("a", "'a' is not a class id or range"), ("1,,2", "'' is not a class id or range"), ("-1", "is not a class id"),
    ("1-", "is not a class id or range"), ("..", "is not a class id or range")])
def test_bad_class_specs_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_classes(spec)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_parse_classes_returns_sorted_distinct_ids_or_refuses(text):
    try:
        ids = parse_classes(text)
    except ConfigError as exc:
        assert str(exc).startswith(f"classes={text!r}")
        return
    assert ids == () or (len(ids) >= 2 and list(ids) == sorted(set(ids)) and min(ids) >= 0)


@given(st.lists(st.integers(0, 30), min_size=2, max_size=8, unique=True))
def test_parse_classes_round_trips_lists(ids):
    assert parse_classes(",".join(map(str, ids))) == tuple(sorted(ids))


_ID = st.one_of(st.integers(0, 200), st.integers(0, 10**7), st.integers(0, 10**30))
_TOKENS = st.one_of(_ID.map(str), st.tuples(_ID, _ID).map(lambda r: f"{r[0]}-{r[1]}"),
                    st.sampled_from(["", " ", "x", "-", "0" * 5000, "9" * 5000, "1-" + "9" * 5000]))


# A bounded time per example (the deadline), not a wall-clock assertion: a spec is parsed in time
# linear in its length, never in the size of the ranges it names (classes=0-1000000 once hung).
@settings(max_examples=300, deadline=1000)
@given(st.lists(_TOKENS, min_size=1, max_size=300))
def test_parse_classes_is_linear_in_the_spec_not_the_ranges(tokens):
    from tunelab.trainables.subsets import MAX_CLASS_ID

    spec = ",".join(tokens)
    try:
        ids = parse_classes(spec)
    except ConfigError as exc:
        assert str(exc).startswith("classes=") and len(str(exc)) < 1000  # one short line, whatever the input
        return
    if not spec.strip():
        assert ids == ()  # every class
        return
    assert len(ids) >= 2 and list(ids) == sorted(set(ids)) and 0 <= min(ids) and max(ids) <= MAX_CLASS_ID


@pytest.mark.parametrize("spec, message", [
    ("0-1000000", "class 1000000 is out of range; allowed: class ids 0-99999"),
    ("0-99999,0-99999", "names class 0 twice"),
    ("1-5,3", "names class 3 twice"),
    ("7," + "9" * 5000, "is out of range; allowed: class ids 0-99999"),
])
def test_huge_or_overlapping_ranges_are_refused_without_expanding(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_classes(spec)


def test_the_largest_allowed_range_is_kept():
    from tunelab.trainables.subsets import MAX_CLASS_ID

    assert parse_classes(f"0-{MAX_CLASS_ID}") == tuple(range(MAX_CLASS_ID + 1))


# ----------------------------------------------------------------------------- leak guard across subsets

@pytest.fixture(scope="module")
def source_backbones(tmp_path_factory):
    """Tiny supervised backbones on digits classes 0-4 and 3-7, and a rotation one on all classes."""
    from tunelab.trainables.pretrain import PretrainConfig, pretrain

    folder = tmp_path_factory.mktemp("sources")
    made = {}
    for name, values in {"0-4": dict(task="supervised", classes="0-4"), "3-7": dict(task="supervised", classes="3-7"),
                         "rotation": dict(task="rotation")}.items():
        made[name] = folder / f"{name}.pt"
        pretrain(PretrainConfig(image_size=8, width=4, epochs=1, **values), made[name], quiet=True)
    return made


def _fine_tune(backbone, **values):
    from tunelab.analysis.reproduce import confirm

    return confirm("finetune", {"image_size": 8, "width": 4, "epochs": 1, "pretrained": str(backbone), **values}, 0)


def test_backbone_records_its_source_classes_and_split(source_backbones):
    state = torch.load(source_backbones["0-4"], weights_only=True)
    assert state["source"]["classes"] == "0-4" and state["source"]["task"] == "supervised"
    assert state["source"]["dataset"] == "digits" and state["source"]["split_seed"] == 0


def test_fine_tuning_on_disjoint_classes_is_allowed(source_backbones):
    assert _fine_tune(source_backbones["0-4"], classes="5-9", train_per_class=5)[-1]["test/acc"] >= 0


@pytest.mark.parametrize("source, target, shared", [("0-4", "3-9", "3, 4"), ("3-7", "5-9", "5, 6, 7"),
                                                    ("0-4", "", "0, 1, 2, 3, 4")])
def test_supervised_source_sharing_target_classes_is_refused(source_backbones, source, target, shared):
    with pytest.raises(ConfigError, match=f"trained on the labels of digits classes {source}, which include this "
                                          f"run's classes {shared}"):
        _fine_tune(source_backbones[source], classes=target)


def test_a_supervised_source_of_disjoint_classes_serves_every_split_seed(source_backbones):
    """compare --replicates fine-tunes one source backbone (split_seed 0) on each replicate's split:
    labelled images of other classes hold none of the target's images, in any split."""
    assert np.isfinite(_fine_tune(source_backbones["0-4"], classes="5-9", split_seed=1)[-1]["test/acc"])


@pytest.mark.parametrize("source, target", [("rotation", "5-9"), ("3-7", "5-9"), ("0-4", "")])
def test_a_source_that_saw_the_target_classes_from_another_split_is_refused(source_backbones, source, target):
    with pytest.raises(ConfigError, match="split_seed=0; with split_seed=1 its source images may include this "
                                          "run's val or test images"):
        _fine_tune(source_backbones[source], classes=target, split_seed=1)


def test_label_free_rotation_source_on_the_same_split_is_allowed(source_backbones):
    assert np.isfinite(_fine_tune(source_backbones["rotation"], classes="5-9")[-1]["test/acc"])


def test_pretrain_command_on_source_classes_names_them(tmp_path, monkeypatch, capsys):
    from tunelab.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--set", "task=supervised", "--dataset", "digits", "--set", "classes=0-4",
                 "--set", "epochs=1", "--set", "image_size=8", "--set", "width=4"]) == 0
    out = tmp_path / "pretrained" / "resnet18-digits-c0-4-supervised.pt"
    assert "(digits classes 0-4 train split)" in capsys.readouterr().out and out.is_file()
    assert torch.load(out, weights_only=True)["source"]["classes"] == "0-4"
