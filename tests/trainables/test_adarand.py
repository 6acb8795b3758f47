"""AdaRand's prior, loss and updates against values computed by hand."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from tunelab.trainables.adarand import ClassConditionalPrior, class_feature_stats, prior_loss
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.data import load_dataset
from tunelab.trainables.engine import prepare
from tunelab.core.errors import ConfigError, DataError
from tunelab.trainables.finetune import AdaRand, AdaRandConfig, FineTune, FinetuneConfig, RandReg, RandRegConfig
from tunelab.trainables.pretrain import PretrainConfig, pretrain

TINY = dict(image_size=8, width=8, epochs=1, batch_size=64, device="cpu")


def _orthonormal(k=4, d=6):
    return torch.eye(d, dtype=torch.float64)[:k]


def _simplex():
    # 4 unit vectors in R^3 with pairwise cosine -1/3 (a regular tetrahedron).
    v = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    return v / math.sqrt(3)


@pytest.mark.parametrize("means,variant,expected", [
    (_orthonormal(), "paper", -1.0), (_orthonormal(), "official", 0.0),
    (_simplex(), "paper", -4 / 3), (_simplex(), "official", 1 / 9),
])
def test_prior_loss_at_the_check_values(means, variant, expected):
    assert prior_loss(means, means.clone(), variant).item() == pytest.approx(expected, abs=1e-12)


def test_prior_loss_by_hand_on_random_means():
    gen = torch.Generator().manual_seed(0)
    mu, bar = torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.randn(3, 5, generator=gen, dtype=torch.float64)
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm()))
    intra = [cos(mu[k], bar[k]) for k in range(3)]
    pairs = [cos(mu[i], mu[j]) for i in range(3) for j in range(3) if i != j]
    paper = sum(1 - c for c in intra) / 3 - sum(1 - c for c in pairs) / 6
    official = sum((c - 1) ** 2 for c in intra) / 3 + sum(c * c for c in pairs) / 6
    assert prior_loss(mu, bar, "paper").item() == pytest.approx(paper, abs=1e-12)
    assert prior_loss(mu, bar, "official").item() == pytest.approx(official, abs=1e-12)


def test_running_mean_update_only_moves_present_classes():
    mu = torch.randn(4, 3)
    prior = ClassConditionalPrior(mu, torch.ones(4, 3), alpha=0.3)
    old = prior.running_mu.clone()
    features = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 2, 0, 2])
    prior.update_running(features, labels)
    for k in range(4):
        rows = features[labels == k]
        expected = old[k] if len(rows) == 0 else 0.3 * old[k] + 0.7 * rows.mean(0)
        assert torch.allclose(prior.running_mu[k], expected, atol=1e-6)
    assert torch.equal(prior.running_mu[1], old[1]) and torch.equal(prior.running_mu[3], old[3])


def test_sampling_is_per_label_and_sends_no_gradient_to_the_prior():
    prior = ClassConditionalPrior(torch.tensor([[0.0, 0.0], [10.0, -10.0]]), torch.tensor([[1e-3] * 2, [1e-3] * 2]))
    z = prior.sample(torch.tensor([1, 0, 1]))
    assert torch.allclose(z, torch.tensor([[10.0, -10.0], [0.0, 0.0], [10.0, -10.0]]), atol=0.01)
    assert not z.requires_grad


def test_class_feature_stats_by_hand_and_in_float64():
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 5.0], [1e4 + 1, 0.0], [1e4 - 1, 0.0]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    mu, sigma = class_feature_stats([(features[:2], labels[:2]), (features[2:], labels[2:])], 3)
    assert torch.allclose(mu, torch.tensor([[2.0, 4.0], [5.0, 5.0], [1e4, 0.0]], dtype=torch.float64))
    # population std; class 1 has one sample -> 0, clamped to 1e-6; class 2 needs float64 (1e8 - 1e8 + 1)
    assert torch.allclose(sigma, torch.tensor([[1.0, 2.0], [1e-6, 1e-6], [1.0, 1e-6]], dtype=torch.float64))


def test_class_without_training_examples_is_a_clear_error():
    with pytest.raises(DataError, match=r"class 2 \('cat'\) has no training examples"):
        class_feature_stats([(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))], 3, ["ant", "bee", "cat"])


@pytest.fixture(scope="module")
def digits8():
    return load_dataset(DataOptions(dataset="digits", image_size=8))


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory, digits8):
    path = tmp_path_factory.mktemp("pre") / "r18.pt"
    pretrain(PretrainConfig(**{**TINY, "epochs": 1}), path, quiet=True)
    return str(path)


def _prepare(method, config_class, backbone, data, **extra):
    return prepare(method, config_class(**TINY, pretrained=backbone, **extra), data)


def test_prior_init_equals_per_class_feature_stats_and_leaves_batchnorm_alone(digits8, backbone_file):
    run = _prepare(AdaRand(), AdaRandConfig, backbone_file, digits8)
    # Recompute independently: a fresh model with the same backbone, features one image at a time.
    fresh = _prepare(FineTune(), FinetuneConfig, backbone_file, digits8).model
    bn_before = {k: v.clone() for k, v in fresh.state_dict().items() if "running" in k}
    fresh.eval()
    with torch.no_grad():
        normed = (digits8.train.images.double() / 255 - torch.tensor(digits8.mean, dtype=torch.float64)[:, None, None]) \
            / torch.tensor(digits8.std, dtype=torch.float64)[:, None, None]
        feats = fresh.backbone(normed.float()).double()
    for k in range(10):
        rows = feats[digits8.train.labels == k]
        assert torch.allclose(run.method.prior.mu[k].double(), rows.mean(0), atol=1e-4)
        assert torch.allclose(run.method.prior.sigma[k].double(), rows.std(0, unbiased=False).clamp_min(1e-6), atol=1e-4)
    # prepare() ran the prior pass; BatchNorm statistics must equal the loaded backbone's.
    run_bn = {k: v for k, v in run.model.state_dict().items() if "running" in k}
    assert all(torch.equal(run_bn[k], bn_before[k]) for k in bn_before)


def test_prior_step_changes_mu_and_keeps_sigma_bit_identical(digits8, backbone_file):
    run = _prepare(AdaRand(), AdaRandConfig, backbone_file, digits8)
    prior = run.method.prior
    mu0, sigma0 = prior.mu.detach().clone(), prior.sigma.clone()
    run.method.after_step(torch.randn(8, prior.mu.shape[1]), torch.arange(8))
    assert torch.equal(prior.sigma, sigma0)
    assert not torch.equal(prior.mu.detach(), mu0)


def test_zero_lambda_gives_plain_fine_tuning_gradients(digits8, backbone_file):
    grads = []
    for method, config_class in ((FineTune(), FinetuneConfig), (AdaRand(), AdaRandConfig)):
        extra = {"reg_lambda": 0.0} if config_class is AdaRandConfig else {}
        run = _prepare(method, config_class, backbone_file, digits8, **extra)
        torch.manual_seed(0)
        x = run.normalize(digits8.train.images[:32])
        loss, *_ = run.method.training_loss(run.model, x, digits8.train.labels[:32], run.config)
        loss.backward()
        grads.append([p.grad.clone() for p in run.model.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-7)


def test_regulariser_equals_hand_computed_mse_for_a_fixed_z(digits8, backbone_file):
    run = _prepare(RandReg(), RandRegConfig, backbone_file, digits8, reg_lambda=2.5)
    z = torch.full((16, run.model.feature_dim), 0.25)
    run.method.reference = lambda features, labels: z
    x = run.normalize(digits8.train.images[:16])
    y = digits8.train.labels[:16]
    loss, logits, features, extras = run.method.training_loss(run.model, x, y, run.config)
    f = features.detach().double()
    by_hand = ((f - 0.25) ** 2).sum().item() / f.numel()
    assert extras["train/reg_loss"].item() == pytest.approx(by_hand, rel=1e-5)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item() + 2.5 * by_hand, rel=1e-5)


def test_reported_metrics_of_the_fine_tuning_family(digits8, backbone_file):
    from tunelab.trainables.engine import train
    from tunelab.trainables.reporting import LocalReporter

    for method, config_class, keys in ((FineTune(), FinetuneConfig, ["train/feat_norm"]),
                                       (RandReg(), RandRegConfig, ["train/reg_loss", "train/feat_norm"]),
                                       (AdaRand(), AdaRandConfig, ["train/reg_loss", "train/feat_norm",
                                                                   "prior/inter_cos"])):
        reporter = LocalReporter(None, {}, quiet=True)
        train(method, config_class(**TINY, pretrained=backbone_file), reporter, data=digits8)
        assert all(k in reporter.history[-1] for k in keys), (method.name, reporter.history[-1])


@pytest.mark.parametrize("prior", ["normal", "uniform", "pretrained"])
def test_randreg_priors(digits8, backbone_file, prior):
    run = _prepare(RandReg(), RandRegConfig, backbone_file, digits8, prior=prior)
    z = run.method.reference(torch.zeros(4096, run.model.feature_dim), torch.zeros(4096, dtype=torch.long))
    if prior == "normal":
        assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05
    elif prior == "uniform":
        assert z.min() >= 0 and z.max() <= 1 and abs(z.mean().item() - 0.5) < 0.05
    else:
        assert torch.allclose(z.mean(0), run.method.mu, atol=0.2 * run.method.sigma.max().item())


def test_adarand_checkpoint_restores_the_prior(digits8, backbone_file, tmp_path):
    from tunelab.trainables.engine import train
    from tunelab.trainables.reporting import LocalReporter

    config = AdaRandConfig(**{**TINY, "epochs": 2}, pretrained=backbone_file)
    straight = LocalReporter(None, {}, quiet=True)
    train(AdaRand(), config, straight, data=digits8)

    class Stop(Exception):
        pass

    class StopAfterOne(LocalReporter):
        def report(self, metrics, state):
            super().report(metrics, state)
            raise Stop

    with pytest.raises(Stop):
        train(AdaRand(), config, StopAfterOne(tmp_path, {}, quiet=True), data=digits8)
    resumed = LocalReporter(tmp_path, {}, quiet=True)
    train(AdaRand(), config, resumed, data=digits8)
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}
    assert strip(resumed.history[-1]) == strip(straight.history[-1])


@pytest.mark.parametrize("values,message", [
    (dict(prior_variant="mine"), "prior_variant='mine' is not valid; choose from: paper, official"),
    (dict(alpha=1.0), r"alpha=1.0 is out of range; allowed: \[0, 1\)"),
    (dict(rand_lr=0.0), r"rand_lr=0.0 is out of range"),
    (dict(pretrained=""), "pretrained='' is not valid"),
])
def test_bad_adarand_values(values, message):
    with pytest.raises(ConfigError, match=message):
        AdaRandConfig(**values)


def test_pretrained_checkpoint_of_another_architecture_is_refused(digits8, backbone_file):
    with pytest.raises(ConfigError, match="is a resnet18 checkpoint, not model='small_cnn'"):
        _prepare(FineTune(), FinetuneConfig, backbone_file, digits8, model="small_cnn")
    with pytest.raises(ConfigError, match="does not fit model='resnet18' with width=16"):
        prepare(FineTune(), FinetuneConfig(**{**TINY, "width": 16}, pretrained=backbone_file), digits8)


def test_backbone_from_another_split_of_the_same_dataset_is_refused(digits8, backbone_file):
    with pytest.raises(ConfigError, match="split_seed=0.*may include this run's val or test images"):
        prepare(FineTune(), FinetuneConfig(**TINY, split_seed=1, pretrained=backbone_file),
                load_dataset(DataOptions(dataset="digits", image_size=8, split_seed=1)))


def test_imagenet_without_cached_weights_names_the_missing_file(monkeypatch, tmp_path, digits8):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    config = FinetuneConfig(**{**TINY, "width": 64, "cifar_stem": False}, pretrained="imagenet")
    with pytest.raises(ConfigError, match=r"weights file resnet18-f37072fd.pth is missing; download .* and put it in"):
        prepare(FineTune(), config, digits8)


def test_imagenet_weights_load_from_the_torch_cache(monkeypatch, tmp_path, digits8):
    import torchvision.models as tvm

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    reference = tvm.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    config = FinetuneConfig(**{**TINY, "width": 64, "cifar_stem": False}, pretrained="imagenet")
    run = prepare(FineTune(), config, digits8)
    assert torch.equal(run.model.backbone.conv1.weight, reference.conv1.weight)
    assert run.model.fc.out_features == 10 and abs(run.model.fc.weight.std().item() - 0.01) < 0.003


def test_auto_backbone_is_pretrained_once_and_cached(monkeypatch, tmp_path, digits8):
    from tunelab.trainables import pretrain as P

    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path))
    calls = []
    real = P.pretrain
    monkeypatch.setattr(P, "pretrain", lambda config, out, **kw: calls.append(out) or real(
        PretrainConfig(**{**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)}, "epochs": 1}),
        out, **kw))
    config = FinetuneConfig(**TINY)
    assert config.pretrained == "auto"
    prepare(FineTune(), config, digits8)
    prepare(AdaRand(), AdaRandConfig(**TINY), digits8)
    assert len(calls) == 1 and calls[0].parent == tmp_path / "pretrained" and calls[0].exists()


def test_a_run_is_the_same_whether_or_not_its_auto_backbone_was_cached(monkeypatch, tmp_path, digits8):
    """Pretraining on first use used to leave the random state where pretraining ended, so the new
    classifier (and everything after it) differed between the first run and every later one."""
    from tunelab.trainables import pretrain as P

    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path))
    real = P.pretrain
    monkeypatch.setattr(P, "pretrain", lambda config, out, **kw: real(
        PretrainConfig(**{**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)}, "epochs": 1}),
        out, **kw))
    config = AdaRandConfig(**TINY)
    first = prepare(AdaRand(), config, digits8)  # pretrains, then builds the head
    assert any((tmp_path / "pretrained").iterdir())
    again = prepare(AdaRand(), config, digits8)  # loads the cached backbone
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name


@pytest.mark.parametrize("schedule,variant,expected", [
    # official: cos(7 pi t / 16) -> 1, cos(7 pi / 32) = 0.77301, cos(7 pi / 16) = 0.19509 (ends above 0)
    ("official", "paper", (1.0, 0.7730104533627370, 0.1950903220161283)),
    ("cosine", "official", (1.0, 0.5, 0.0)),
    ("auto", "official", (1.0, 0.7730104533627370, 0.1950903220161283)),
    ("auto", "paper", (1.0, 0.5, 0.0)),
])
def test_prior_lr_schedule_values_at_start_middle_and_end(schedule, variant, expected):
    from tunelab.trainables.adarand import prior_lr_factor

    got = tuple(prior_lr_factor(schedule, variant, t) for t in (0.0, 0.5, 1.0))
    assert got == pytest.approx(expected, abs=1e-12)


def test_the_prior_optimizer_runs_at_the_official_schedule_under_the_official_variant():
    """One real AdaRand step at the end of training: Adam's lr is 0.195 * rand_lr, not 0."""
    from tunelab.trainables.config import build_config
    from tunelab.trainables.finetune import AdaRand, AdaRandConfig

    config = build_config(AdaRandConfig, {"prior_variant": "official", "rand_lr": 0.02})
    method = AdaRand()
    method.prior = ClassConditionalPrior(torch.randn(3, 4), torch.ones(3, 4))
    method.prior_optimizer = torch.optim.Adam([method.prior.mu], lr=config.rand_lr)
    method.variant, method.schedule, method.rand_lr = config.prior_variant, config.prior_schedule, config.rand_lr
    method.total_steps, method.prior_step = 10, 10
    method.after_step(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert method.prior_optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * 0.1950903220161283)


def test_unknown_prior_schedule_is_refused_naming_the_choices():
    from tunelab.trainables.config import build_config
    from tunelab.core.errors import ConfigError
    from tunelab.trainables.finetune import AdaRandConfig

    with pytest.raises(ConfigError, match="prior_schedule='linear'.*auto, cosine, official"):
        build_config(AdaRandConfig, {"prior_schedule": "linear"})
