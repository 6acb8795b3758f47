import pytest
import torch
import torchvision.models as tvm

from tunelab.core.errors import ConfigError
from tunelab.trainables.models import FeatureClassifier, ModelOptions, build_model, model_names

# Width-reduced where the architecture allows, so the whole registry runs in seconds on a CPU.
SMALL_WIDTH = {"small_cnn": 8, "alexnet_cifar": 16, **{f"resnet{d}": 8 for d in (18, 34, 50, 101, 152)}}
INPUT_SIZE = {"inception_v3": 75}


# Building these takes seconds on a CPU (VGG's 100M-weight classifier is initialised in full).
BIG = {"vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "wide_resnet50_2"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.long) if n in BIG else n for n in model_names()])
def test_every_registered_model_returns_logits_and_features_and_trains(name):
    torch.manual_seed(0)
    model = build_model(ModelOptions(name=name, width=SMALL_WIDTH.get(name, 0)), num_classes=7)
    assert isinstance(model, FeatureClassifier)
    size = INPUT_SIZE.get(name, 32)
    logits, features = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 7)
    assert features.shape == (2, model.feature_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()
    (logits.square().mean() + features.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_the_big_models_left_out_of_the_quick_loop_are_registered():
    assert BIG <= set(model_names())  # a stale name here would silently stop marking anything


def test_resnet_backbone_matches_torchvision_parameter_names_and_shapes():
    ours = build_model(ModelOptions(name="resnet50", cifar_stem=False), num_classes=1000)
    theirs = tvm.resnet50(weights=None)
    ours_shapes = {k: v.shape for k, v in ours.backbone.state_dict().items()}
    theirs_shapes = {k: v.shape for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    assert ours_shapes == theirs_shapes


def test_cifar_stem_keeps_resolution_at_the_first_stage():
    model = build_model(ModelOptions(name="resnet18", width=8, cifar_stem=True), 10)
    stem = model.backbone.maxpool(model.backbone.relu(model.backbone.bn1(model.backbone.conv1(torch.randn(1, 3, 32, 32)))))
    assert stem.shape[-2:] == (32, 32)


def test_alexnet_cifar_is_the_seed_network_without_batchnorm():
    model = build_model(ModelOptions(name="alexnet_cifar", batchnorm=False), 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.padding[0]) for c in convs] == [
        (64, 7, 2), (192, 5, 2), (384, 3, 1), (256, 3, 1), (256, 3, 1)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(2304, 4096), (4096, 4096), (4096, 10)]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("scheme", ["he", "xavier"])
def test_init_schemes_set_weight_scale_and_zero_biases(scheme):
    torch.manual_seed(0)
    model = build_model(ModelOptions(name="small_cnn", width=16, batchnorm=False, init=scheme), 10)
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][2]
    fan_in = conv.in_channels * 9
    fan_out = conv.out_channels * 9
    expected_std = (2 / fan_out) ** 0.5 if scheme == "he" else (2 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.1)
    assert torch.count_nonzero(conv.bias) == 0


def test_batchnorm_switch_removes_norm_layers():
    with_bn = build_model(ModelOptions(name="resnet18", width=8), 10)
    without = build_model(ModelOptions(name="resnet18", width=8, batchnorm=False), 10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in without.modules())


def test_unknown_model_and_unsupported_batchnorm_are_config_errors():
    with pytest.raises(ConfigError, match="model='resnet9'.*choose from.*resnet18"):
        build_model(ModelOptions(name="resnet9"), 10)
    with pytest.raises(ConfigError, match="batchnorm=false is not supported by model='vgg11'"):
        build_model(ModelOptions(name="vgg11", batchnorm=False), 10)
