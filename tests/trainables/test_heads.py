"""Margin heads against values computed independently (arccos-based, float64)."""
import math

import numpy as np
import pytest
import torch

from tunelab.core.errors import ConfigError
from tunelab.trainables.heads import ArcFace, CosFace, CosineHead

torch.set_default_dtype(torch.float32)


def _random(n=128, dim=16, classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


def _head(cls, dim=16, classes=10, **kwargs):
    torch.manual_seed(1)
    return cls(dim, classes, **kwargs).double()


def _cosines(x, w):
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    wn = w.detach().numpy() / np.linalg.norm(w.detach().numpy(), axis=1, keepdims=True)
    return xn @ wn.T


def _expected_arcface(cos, labels, s, m, easy):
    theta = np.arccos(np.clip(cos, -1, 1))
    out = cos.copy()
    for i, y in enumerate(labels):
        c = cos[i, y]
        if easy:
            target = math.cos(theta[i, y] + m) if c > 0 else c
        else:
            target = math.cos(theta[i, y] + m) if c > math.cos(math.pi - m) else c - math.sin(math.pi - m) * m
        out[i, y] = target
    return s * out


@pytest.mark.parametrize("cls", [ArcFace, CosFace, CosineHead])
def test_zero_margin_is_exactly_s_times_cos(cls):
    x, y = _random()
    kwargs = {} if cls is CosineHead else {"m": 0.0}
    head = _head(cls, s=17.0, **kwargs)
    assert torch.equal(head(x, y), head.logits(x))
    assert np.allclose(head.logits(x).detach().numpy(), 17.0 * _cosines(x, head.weight), atol=1e-12)


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_logits_match_hand_computation_on_random_embeddings(easy):
    x, y = _random(n=200)
    head = _head(ArcFace, s=30.0, m=0.5, easy_margin=easy)
    expected = _expected_arcface(_cosines(x, head.weight), y.numpy(), 30.0, 0.5, easy)
    assert np.allclose(head(x, y).detach().numpy(), expected, atol=1e-9)


def test_arcface_branch_below_threshold_is_exercised():
    # A feature almost opposite its class row: cos < cos(pi - m), the fallback branch.
    head = _head(ArcFace, dim=2, classes=2, s=10.0, m=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    x = torch.tensor([[-1.0, 0.05]], dtype=torch.float64)
    cos = _cosines(x, head.weight)
    assert cos[0, 0] < math.cos(math.pi - 0.5)
    expected = _expected_arcface(cos, np.array([0]), 10.0, 0.5, easy=False)
    assert np.allclose(head(x, torch.tensor([0])).detach().numpy(), expected, atol=1e-12)


def test_cosface_logits_match_hand_computation():
    x, y = _random(n=150, seed=3)
    head = _head(CosFace, s=64.0, m=0.35)
    cos = _cosines(x, head.weight)
    expected = cos.copy()
    expected[np.arange(150), y.numpy()] -= 0.35
    assert np.allclose(head(x, y).detach().numpy(), 64.0 * expected, atol=1e-9)


@pytest.mark.parametrize("cls", [ArcFace, CosFace])
def test_scaling_inputs_and_weight_rows_changes_nothing(cls):
    x, y = _random()
    head = _head(cls, s=30.0)
    before = head(x, y).detach()
    with torch.no_grad():
        head.weight.mul_(torch.linspace(0.1, 9.0, 10, dtype=torch.float64)[:, None])
    scaled = x * torch.linspace(0.5, 40.0, x.shape[0], dtype=torch.float64)[:, None]
    assert torch.allclose(head(scaled, y), before, atol=1e-10)


@pytest.mark.parametrize("m", [0.1, 0.5, 0.8, 1.2])
def test_true_class_logit_never_rises_with_the_angle(m):
    head = _head(ArcFace, dim=2, classes=2, s=1.0, m=m, easy_margin=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    theta = torch.linspace(1e-4, math.pi - 1e-4, 20001, dtype=torch.float64)
    x = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    target = head(x, torch.zeros(len(theta), dtype=torch.long))[:, 0]
    assert torch.all(target[1:] - target[:-1] <= 1e-12)


@pytest.mark.parametrize("cls", [ArcFace, CosFace])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradients_are_finite_at_cos_plus_minus_one(cls, sign):
    head = _head(cls, dim=4, classes=3)
    x = (sign * head.weight.detach()[[0, 1]]).clone().requires_grad_(True)
    logits = head(x, torch.tensor([0, 1]))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()
    assert torch.isfinite(logits).all()


def test_heads_follow_the_input_device_and_dtype():
    head = ArcFace(8, 3)
    x = torch.randn(5, 8, dtype=torch.bfloat16)
    assert head(x, torch.tensor([0, 1, 2, 0, 1])).dtype == torch.float32  # promoted, not truncated
    assert head.double()(x.double(), torch.tensor([0, 1, 2, 0, 1])).dtype == torch.float64


@pytest.mark.parametrize("make,message", [
    (lambda: ArcFace(4, 2, m=2.0), r"m=2.0 is out of range; allowed: \[0, 1.5708\)"),
    (lambda: ArcFace(4, 2, s=0.0), r"s=0.0 is out of range; allowed: \(0, inf\]"),
    (lambda: CosFace(4, 2, m=-0.1), r"m=-0.1 is out of range"),
])
def test_bad_head_parameters(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("head", [ArcFace(64, 10, s=30.0, m=0.5), CosFace(64, 10, s=30.0, m=0.35),
                                  CosineHead(64, 10, s=30.0)], ids=["arcface", "cosface", "normsoftmax"])
def test_heads_compute_in_float32_inside_bf16_autocast(head):
    # Under autocast the matmul would run in bfloat16: the true-class logit was off by up to 0.8 at
    # s=30 and flat for small angles. Inputs arrive in bf16 from an autocast backbone.
    torch.manual_seed(0)
    features = torch.randn(256, 64).to(torch.bfloat16)
    labels = torch.randint(0, 10, (256,))
    expected = head(features.float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(features, labels)
        plain = head.logits(features)
    assert logits.dtype == torch.float32 and plain.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, head.logits(features.float()), atol=1e-5, rtol=0)
