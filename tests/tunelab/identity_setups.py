"""Prepared files for the fault matrix's identity rows (round 3, 2): each a `setup(folder)` that
writes quietly (the row's one stderr line is all it may print), with tunelab's own engine."""
from pathlib import Path

from tests.conftest import write_image_folder

TINY = {"model": "small_cnn", "width": 8, "image_size": 8, "epochs": 1}


def own_labels_checkpoint(folder: Path) -> None:
    """`tunelab train classifier --out {d}/own` on digits, every class: what a careless user passes
    as `pretrained=` for a fine-tuning run on the same labels."""
    from trainables import METHOD_CLASSES, get_method
    from trainables.config import build_config, to_dict
    from trainables.engine import train
    from trainables.reporting import LocalReporter

    config = build_config(METHOD_CLASSES["classifier"].config_class, TINY)
    train(get_method("classifier"), config, LocalReporter(folder / "own", to_dict(config), quiet=True))


def imagefolder_backbone(folder: Path) -> None:
    """A supervised backbone of `imagefolder:{d}/imgs` at {d}/imgs.pt, and a symlink {d}/imgs_alias."""
    from trainables.pretrain import PretrainConfig, pretrain

    write_image_folder(folder / "imgs", {"cat": 6, "dog": 6, "owl": 6})
    (folder / "imgs_alias").symlink_to(folder / "imgs")
    pretrain(PretrainConfig(**TINY, task="supervised", dataset=f"imagefolder:{folder / 'imgs'}"),
             folder / "imgs.pt", quiet=True)
