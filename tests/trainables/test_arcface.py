import dataclasses

import pytest
import torch

from tunelab.trainables.arcface import ArcFaceConfig, ArcFaceMethod
from tunelab.trainables.config import build_config
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.data import load_dataset
from tunelab.trainables.splits import ArraySplit
from tunelab.trainables.engine import evaluate, prepare, train
from tunelab.core.errors import ConfigError
from tunelab.trainables.reporting import LocalReporter

TINY = dict(image_size=8, width=8, epochs=1, batch_size=128, device="cpu", n_feats=16)


@pytest.fixture(scope="module")
def digits8():
    return load_dataset(DataOptions(dataset="digits", image_size=8))


def test_arcface_reports_contract_and_retrieval_metrics(digits8):
    reporter = LocalReporter(None, {}, quiet=True)
    train(ArcFaceMethod(), ArcFaceConfig(**TINY), reporter, data=digits8)
    row = reporter.history[-1]
    for key in ("val/acc", "val/acc_top5", "val/recall@1", "val/map@r", "val/acc_best", "train/loss"):
        assert key in row
    assert 0 <= row["val/recall@1"] <= 1 and 0 <= row["val/map@r"] <= 1


@pytest.mark.parametrize("head", ["arcface", "cosface", "normsoftmax"])
def test_every_head_and_no_projection_trains(digits8, head):
    config = ArcFaceConfig(**{**TINY, "head": head, "n_feats": 0, "m": 0.3})
    reporter = LocalReporter(None, {}, quiet=True)
    final = train(ArcFaceMethod(), config, reporter, data=digits8)
    assert final["train/loss"] == final["train/loss"]  # not NaN


def test_evaluation_never_sees_labels(digits8):
    """Permuting the labels handed to evaluation leaves every prediction unchanged."""
    run = prepare(ArcFaceMethod(), ArcFaceConfig(**TINY), digits8)
    captured = []
    original_predict = run.method.predict

    def spy(model, images):
        logits, features = original_predict(model, images)
        captured.append(logits.clone())
        return logits, features

    run.method.predict = spy
    first = evaluate(run, "val")
    permuted = run.data.val.labels[torch.randperm(len(run.data.val), generator=torch.Generator().manual_seed(0))]
    run.data = dataclasses.replace(run.data, val=ArraySplit(run.data.val.images, permuted))
    second = evaluate(run, "val")
    assert torch.equal(captured[0], captured[1])
    expected_acc = (captured[1].argmax(1) == permuted).double().mean().item()
    assert second["val/acc"] == pytest.approx(expected_acc)
    assert first["val/acc"] == pytest.approx((captured[0].argmax(1) == digits8.val.labels).double().mean().item())


@pytest.mark.parametrize("values,message", [
    ({"m": "2.0"}, r"m=2.0 is out of range; allowed: \[0, 1.5708\)"),
    ({"s": "0"}, r"s=0.0 is out of range; allowed: \(0, inf\]"),
    ({"head": "sphereface"}, "head='sphereface' is not valid; choose from: arcface, cosface, normsoftmax"),
    ({"head": "cosface", "m": "1.5"}, r"m=1.5 is out of range; allowed: \[0, 1\)"),
])
def test_bad_arcface_values(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(ArcFaceConfig, values)
