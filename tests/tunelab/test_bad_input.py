"""Bad input at the edges: exit code 2, one line naming the value and what is allowed, no
traceback, nothing of the user's overwritten. One table, run through the real command line."""
from pathlib import Path

import pytest
import torch

from tests.conftest import write_cifar10, write_image_folder
from tunelab.cli import main


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Everything the cases point at, laid out once per case."""
    write_cifar10(tmp_path / "cifar_bad" / "cifar-10-batches-py")
    (tmp_path / "cifar_bad" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02garbage")
    write_cifar10(tmp_path / "cifar_cut" / "cifar-10-batches-py")
    batch = tmp_path / "cifar_cut" / "cifar-10-batches-py" / "data_batch_4"
    batch.write_bytes(batch.read_bytes()[:1000])
    (tmp_path / "empty").mkdir()
    write_image_folder(tmp_path / "oneclass", {"cat": 4})
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "notexp").mkdir()
    (tmp_path / "space_unknown.yaml").write_text("nosuchkey: {low: 1, high: 2}\n")
    (tmp_path / "space_type.yaml").write_text("lr: {low: small, high: 0.1}\n")
    (tmp_path / "space_order.yaml").write_text("lr: {low: 0.1, high: 0.01}\n")
    (tmp_path / "space_log.yaml").write_text("lr: {low: 0.0, high: 0.1}\n")
    (tmp_path / "evil.yaml").write_text("lr: !!python/object/apply:os.system ['echo pwned']\n")
    (tmp_path / "notbest.yaml").write_text("lr: 0.1\n")
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "tunelab.json").write_text("{\"precious\": true}")
    (tmp_path / "existing.pt").write_bytes(b"precious")
    from trainables.models import ModelOptions, build_model
    from trainables.pretrained import BACKBONE_KIND
    small = build_model(ModelOptions(name="small_cnn", width=8), 10)
    torch.save({"kind": BACKBONE_KIND, "model_name": "small_cnn", "backbone": small.backbone.state_dict(),
                "source": {}}, tmp_path / "small_cnn.pt")
    torch.save({"kind": BACKBONE_KIND, "model_name": "resnet18", "backbone": small.backbone.state_dict(),
                "source": {}}, tmp_path / "mislabelled.pt")
    return tmp_path


CASES = [
    # (id, argv with {d} for the files folder, fragments the one line must contain)
    ("unknown method", ["train", "clasifier"], ["invalid choice: 'clasifier'", "classifier"]),
    ("unknown dataset", ["train", "classifier", "--dataset", "mnist"], ["dataset='mnist'", "digits, cifar10"]),
    ("unknown model", ["train", "classifier", "--set", "model=resnet9"], ["model='resnet9'", "resnet18"]),
    ("unknown optimizer", ["train", "classifier", "--set", "optimizer=adamm"], ["optimizer='adamm'", "adamw"]),
    ("unknown schedule", ["train", "classifier", "--set", "schedule=linear"], ["schedule='linear'", "cosine"]),
    ("unknown head", ["train", "arcface", "--set", "head=sphereface"], ["head='sphereface'", "cosface"]),
    ("unknown prior variant", ["train", "adarand", "--set", "prior_variant=mine"], ["prior_variant='mine'", "official"]),
    ("unknown randreg prior", ["train", "randreg", "--set", "prior=gauss"], ["prior='gauss'", "uniform"]),
    ("unknown init", ["train", "classifier", "--set", "init=zeros"], ["init='zeros'", "xavier"]),
    ("malformed --set", ["train", "classifier", "--set", "lr"], ["--set 'lr' is malformed", "KEY=VALUE"]),
    ("value of wrong type", ["train", "classifier", "--set", "lr=fast"], ["lr='fast'", "float"]),
    ("unknown config key", ["train", "classifier", "--set", "nosuchkey=1"], ["nosuchkey", "valid keys"]),
    ("margin out of range", ["train", "arcface", "--set", "m=2.0"], ["m=2.0", "[0, 1.5708)"]),
    ("unsafe YAML config", ["train", "classifier", "--config", "{d}/evil.yaml"], ["evil.yaml", "not valid YAML"]),
    ("space: unknown key", ["tune", "classifier", "--space", "{d}/space_unknown.yaml", "--storage", "{d}/runs"],
     ["unknown key 'nosuchkey'", "valid keys"]),
    ("space: wrong type", ["tune", "classifier", "--space", "{d}/space_type.yaml", "--storage", "{d}/runs"],
     ["lr.low must be a finite number", "'small'"]),
    ("space: low >= high", ["tune", "classifier", "--space", "{d}/space_order.yaml", "--storage", "{d}/runs"],
     ["lr needs low < high", "low=0.1, high=0.01"]),
    ("space: log with low <= 0", ["tune", "classifier", "--space", "{d}/space_log.yaml", "--storage", "{d}/runs"],
     ["log scale and needs low > 0", "low=0.0"]),
    ("corrupted CIFAR batch", ["train", "classifier", "--dataset", "cifar10", "--data-dir", "{d}/cifar_bad"],
     ["data_batch_2", "corrupted or truncated"]),
    ("truncated CIFAR batch", ["train", "classifier", "--dataset", "cifar10", "--data-dir", "{d}/cifar_cut"],
     ["data_batch_4", "corrupted or truncated"]),
    ("missing CIFAR folder", ["train", "classifier", "--dataset", "cifar10", "--data-dir", "{d}/nowhere"],
     ["{d}/nowhere", "offline"]),
    ("empty image folder", ["train", "classifier", "--dataset", "imagefolder:{d}/empty"], ["{d}/empty", "no images"]),
    ("one-class image folder", ["train", "classifier", "--dataset", "imagefolder:{d}/oneclass"],
     ["{d}/oneclass", "at least 2 class"]),
    ("unwritable storage", ["tune", "classifier", "--storage", "{d}/afile"], ["{d}/afile", "not writable"]),
    ("report on a non-experiment", ["report", "{d}/notexp", "--out", "{d}/rep"], ["{d}/notexp", "not a tunelab experiment"]),
    ("resume on a non-experiment", ["resume", "{d}/notexp"], ["{d}/notexp", "not a tunelab experiment"]),
    ("best on a non-experiment", ["best", "{d}/notexp"], ["{d}/notexp", "not a tunelab experiment"]),
    ("checkpoint of another architecture", ["train", "finetune", "--set", "pretrained={d}/small_cnn.pt"],
     ["small_cnn checkpoint, not model='resnet18'"]),
    ("checkpoint whose tensors do not fit", ["train", "finetune", "--set", "pretrained={d}/mislabelled.pt"],
     ["mislabelled.pt", "does not fit model='resnet18'"]),
    ("existing experiment name", ["tune", "classifier", "--storage", "{d}/runs", "--name", "taken"],
     ["already exists", "tunelab resume", "--overwrite"]),
    ("existing pretrain output", ["pretrain", "--out", "{d}/existing.pt"], ["existing.pt", "already exists"]),
    ("reproduce a missing file", ["reproduce", "{d}/nothere.yaml"], ["nothere.yaml", "no such file"]),
    ("reproduce a non-best file", ["reproduce", "{d}/notbest.yaml"], ["notbest.yaml", "not a best-config file"]),
    ("compare with an unknown method", ["compare", "--methods", "classifier,svm"], ["'svm' is not known", "arcface"]),
    ("tune with a bad search", ["tune", "classifier", "--search", "grid"], ["--search 'grid'", "optuna, random"]),
    ("tune with a bad GPU share", ["tune", "classifier", "--gpus-per-trial", "2.5"], ["--gpus-per-trial 2.5"]),
    ("negative checkpoint interval", ["tune", "classifier", "--checkpoint-interval", "-5"],
     ["--checkpoint-interval -5", ">= 0"]),
    ("stop-at not finite", ["tune", "classifier", "--stop-at", "nan"], ["--stop-at nan", "finite value of val/acc"]),
]


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("case,argv,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_on_one_line(files, capsys, case, argv, fragments, monkeypatch):
    monkeypatch.setattr("trainables.data._online", lambda url, timeout=3.0: False)
    monkeypatch.setattr("tunelab.driver.connect_ray", lambda address: pytest.fail("Ray must not start"))
    before = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    code = _exit_code([a.replace("{d}", str(files)) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment.replace("{d}", str(files)) in lines[0], lines[0]
    after = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p in before} == before, "a user's file was changed"


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25
