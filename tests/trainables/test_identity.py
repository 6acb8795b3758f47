"""Data identities and the leak guard: every checkpoint records what it was trained on, resolved, and
a `pretrained=` file is compared with the target by what its data is, not by how it was spelled."""
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import write_image_folder
from tunelab.trainables import METHOD_CLASSES, get_method
from tunelab.trainables.config import build_config, to_dict
from tunelab.trainables.engine import train
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import CHECKPOINT_FILE
from tunelab.trainables.identity import canonical_dataset, data_identity
from tunelab.trainables.pretrain import PretrainConfig, pretrain
from tunelab.trainables.reporting import LocalReporter
from tunelab.cli import main

TINY = {"image_size": 8, "width": 8, "epochs": 1}
SMALL = ["--set", "model=small_cnn", "--set", "width=8", "--set", "image_size=8", "--set", "epochs=1"]


def _train_out(method: str, out: Path, **values) -> dict:
    """What `tunelab train METHOD --out OUT` writes (same engine, same reporter), quietly; its checkpoint."""
    config = build_config(METHOD_CLASSES[method].config_class, {**TINY, **values})
    train(get_method(method), config, LocalReporter(out, to_dict(config), quiet=True))
    return torch.load(out / CHECKPOINT_FILE, weights_only=True)


def _refused(capsys, argv) -> str:
    """Run the CLI, expect exit 2 with one stderr line, return it."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def images(tmp_path, monkeypatch) -> Path:
    """An image folder `x` (working folder: tmp_path) and a symlink `alias` to it."""
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "x", {"cat": 6, "dog": 6, "owl": 6})
    (tmp_path / "alias").symlink_to(tmp_path / "x")
    return tmp_path / "x"


def test_one_folder_is_one_dataset_however_it_is_spelled(images):
    spellings = ["imagefolder:x", "imagefolder:./x", "imagefolder:x/", "imagefolder:alias",
                 f"imagefolder:{images}", f"imagefolder:{images.parent}/./alias/"]
    assert {canonical_dataset(s) for s in spellings} == {f"imagefolder:{os.path.realpath(images)}"}
    assert canonical_dataset("digits") == "digits"


def test_a_training_checkpoint_records_its_resolved_data_identity(images, tmp_path):
    state = _train_out("classifier", tmp_path / "run", dataset="imagefolder:./alias/", classes="0-1",
                       split_seed=3, val_fraction=0.2)
    real = os.path.realpath(images)
    assert state["source"] == {"dataset": f"imagefolder:{real}", "data_folder": real, "split_seed": 3,
                               "val_fraction": 0.2, "classes": "0-1", "task": "supervised", "image_size": 8,
                               "train_per_class": 0}


def test_a_backbone_records_its_resolved_data_identity(images, tmp_path):
    pretrain(PretrainConfig(**TINY, model="small_cnn", task="supervised", dataset="imagefolder:x/"),
             tmp_path / "b.pt", quiet=True)
    source = torch.load(tmp_path / "b.pt", weights_only=True)["source"]
    assert source["dataset"] == f"imagefolder:{os.path.realpath(images)}" and source["task"] == "supervised"
    assert source["data_folder"] == os.path.realpath(images) and source["split_seed"] == 0


def test_a_named_dataset_records_its_resolved_data_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = build_config(METHOD_CLASSES["classifier"].config_class, {"dataset": "cifar10", "data_dir": "./data/"})
    assert data_identity(config)["data_folder"] == str(tmp_path.resolve() / "data")
    assert data_identity(build_config(METHOD_CLASSES["classifier"].config_class, {}))["data_folder"] is None


def test_train_out_checkpoint_on_the_targets_own_labels_is_refused(tmp_path, capsys):
    _train_out("classifier", tmp_path / "run", model="small_cnn")
    checkpoint = tmp_path / "run" / CHECKPOINT_FILE
    line = _refused(capsys, ["train", "finetune", *SMALL, "--set", f"pretrained={checkpoint}"])
    assert str(checkpoint) in line and "trained on the labels of digits classes all" in line
    assert "target (digits, split_seed=0, val_fraction=0.1, classes all)" in line


def test_train_out_checkpoint_on_other_classes_passes(tmp_path, capsys):
    _train_out("classifier", tmp_path / "run", model="small_cnn", classes="0-4")
    checkpoint = tmp_path / "run" / CHECKPOINT_FILE
    assert main(["train", "finetune", *SMALL, "--set", "classes=5-9", "--set", f"pretrained={checkpoint}"]) == 0


@pytest.mark.parametrize("spelling", ["x", "./x", "x/", "alias", "./alias/"])
def test_imagefolder_source_is_found_under_every_spelling_of_the_target(images, tmp_path, capsys, spelling):
    pretrain(PretrainConfig(**TINY, model="small_cnn", task="supervised", dataset="imagefolder:x"),
             tmp_path / "b.pt", quiet=True)
    line = _refused(capsys, ["train", "finetune", *SMALL, "--dataset", f"imagefolder:{spelling}",
                             "--set", f"pretrained={tmp_path / 'b.pt'}"])
    assert str(tmp_path / "b.pt") in line and f"imagefolder:{os.path.realpath(images)}" in line
    assert "which include this run's classes all" in line


def _unrecorded(path: Path) -> Path:
    """A backbone made by hand: no source record."""
    from tunelab.trainables.models import ModelOptions, build_model
    from tunelab.trainables.backbone_cache import BACKBONE_KIND

    net = build_model(ModelOptions(name="small_cnn", width=8), 10)
    torch.save({"kind": BACKBONE_KIND, "model_name": "small_cnn", "backbone": net.backbone.state_dict()}, path)
    return path


def test_a_checkpoint_without_a_record_is_refused_unless_allowed_and_then_recorded(tmp_path, capsys):
    unknown = _unrecorded(tmp_path / "hand.pt")
    line = _refused(capsys, ["train", "finetune", *SMALL, "--set", f"pretrained={unknown}"])
    assert str(unknown) in line and "records no source data" in line and "allow_unknown_source=true" in line
    assert "(digits, split_seed=0" in line

    assert main(["train", "finetune", *SMALL, "--set", f"pretrained={unknown}", "--set", "allow_unknown_source=true",
                 "--set", "classes=5-9", "--out", str(tmp_path / "ft")]) == 0
    assert "used unchecked because allow_unknown_source=true" in capsys.readouterr().err
    state = torch.load(tmp_path / "ft" / CHECKPOINT_FILE, weights_only=True)
    assert state["config"]["allow_unknown_source"] is True
    assert state["source"]["pretrained"] == {"source": "checkpoint", "file": str(unknown), "data": None,
                                             "unknown_source_allowed": True}

    # Fine-tuned from an unknown source, that checkpoint's own source stays unknown further up the chain.
    again = tmp_path / "ft" / CHECKPOINT_FILE
    line = _refused(capsys, ["train", "finetune", *SMALL, "--set", "classes=0-4", "--set", f"pretrained={again}"])
    assert str(again) in line and "records no source data" in line


def test_the_chain_of_sources_is_checked(tmp_path, capsys):
    """A checkpoint fine-tuned on classes 5-9 from a backbone of classes 0-4 carries both: a target of
    classes 0-4 is refused for the backbone's labels, not passed for the checkpoint's own."""
    pretrain(PretrainConfig(**TINY, model="small_cnn", task="supervised", classes="0-4"), tmp_path / "b.pt",
             quiet=True)
    state = _train_out("finetune", tmp_path / "ft", model="small_cnn", classes="5-9",
                       pretrained=str(tmp_path / "b.pt"))
    assert state["source"]["classes"] == "5-9" and state["source"]["pretrained"]["data"]["classes"] == "0-4"
    line = _refused(capsys, ["train", "finetune", *SMALL, "--set", "classes=0-2",
                             "--set", f"pretrained={tmp_path / 'ft' / CHECKPOINT_FILE}"])
    assert "trained on the labels of digits classes 0-4, which include this run's classes 0, 1, 2" in line


def test_compare_style_source_backbone_passes_the_guard(tmp_path):
    """compare's source backbone: supervised on classes 0-4, fine-tuned on 5-9 of the same split."""
    from tunelab.trainables.pretrained import check_pretrained_file

    pretrain(PretrainConfig(**TINY, model="small_cnn", task="supervised", classes="0-4"), tmp_path / "b.pt",
             quiet=True)
    config = build_config(METHOD_CLASSES["adarand"].config_class,
                          {**TINY, "model": "small_cnn", "classes": "5-9", "pretrained": str(tmp_path / "b.pt")})
    check_pretrained_file(config)  # no error
    with pytest.raises(ConfigError, match="which include this run's classes 4"):
        check_pretrained_file(build_config(METHOD_CLASSES["adarand"].config_class,
                                           {**TINY, "model": "small_cnn", "classes": "4-9",
                                            "pretrained": str(tmp_path / "b.pt")}))
