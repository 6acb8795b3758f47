"""Model zoo by name. Every model returns `(logits, features)`, features = pooled penultimate vector.

torchvision is imported only when a model needs it: it pulls in torch._dynamo (about 2 s per
process here), which every Ray trial worker would otherwise pay for the small CNN too.

Models are `FeatureClassifier(backbone, fc)`: the backbone maps images to features, `fc` is the
linear classifier. Methods swap or drop `fc` (fine-tuning replaces it, ArcFace puts a margin head
on the features) without knowing the architecture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from tunelab.trainables import catalog
from tunelab.trainables.catalog import INITS, TORCHVISION_FAMILIES
from tunelab.core.errors import ConfigError, check_choice
from tunelab.trainables.registry import registrar



@dataclass(frozen=True)
class ModelOptions:
    name: str = "small_cnn"
    width: int = 0  # 0: the architecture's own width (64 for ResNets, 32 for small_cnn)
    cifar_stem: bool = True  # ResNets: 3x3 stride-1 first conv and no max-pool, for small images
    batchnorm: bool = True
    init: str = "default"
    dropout: float = 0.0


class FeatureClassifier(nn.Module):
    """backbone(x) -> features (B, D); fc(features) -> logits. forward returns both."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.fc = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return self.fc(features), features


_REGISTRY: dict[str, Callable[[ModelOptions, int], FeatureClassifier]] = {}


register_model = registrar(_REGISTRY, "model", listed=catalog.MODELS)  # @register_model("name", ...) on a builder


model_names = catalog.model_names


def build_model(options: ModelOptions, num_classes: int) -> FeatureClassifier:
    check_choice("model", options.name, model_names())
    check_choice("init", options.init, INITS)
    model = _REGISTRY[options.name](options, num_classes)
    initialise(model, options.init)
    return model


def check_model_fits(options: ModelOptions, image_size: int, num_classes: int) -> None:
    """Refuse a model / image-size pair that cannot run (alexnet_cifar at 8 px, inception_v3 at 32 px).

    One forward pass on PyTorch's meta device: shapes are propagated, nothing is allocated or
    computed, so it costs milliseconds even for large models, and the error comes before training
    (or a whole search of failing trials) starts.
    """
    try:
        with torch.device("meta"):
            build_model(options, num_classes)(torch.empty(2, 3, image_size, image_size))
    except ConfigError:
        raise
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"model={options.name!r} cannot run on {image_size}x{image_size} images ({reason[:160]}); "
                          "raise image_size or choose a smaller-input model such as small_cnn or resnet18") from None


def initialise(model: nn.Module, scheme: str) -> None:
    """He (ReLU nets) or Xavier (sigmoid/tanh nets) init of conv and linear weights; biases 0."""
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "he":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _norm2d(options: ModelOptions) -> Callable[[int], nn.Module]:
    return nn.BatchNorm2d if options.batchnorm else (lambda channels: nn.Identity())


def _require_batchnorm(options: ModelOptions) -> None:
    if not options.batchnorm:
        raise ConfigError(f"batchnorm=false is not supported by model={options.name!r}; "
                          "models that allow it: small_cnn, alexnet_cifar, resnet*")


# ----------------------------------------------------------------------------- small CNN (the original CNN lecture)

@register_model("small_cnn")
def small_cnn(options: ModelOptions, num_classes: int) -> FeatureClassifier:
    """Three conv stages (w, 2w, 4w channels), each two 3x3 convs then a 2x2 max-pool."""
    w = options.width or 32
    norm = _norm2d(options)

    def stage(cin, cout, pool=True):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=not options.batchnorm), norm(cout), nn.ReLU(inplace=True),
                  nn.Conv2d(cout, cout, 3, padding=1, bias=not options.batchnorm), norm(cout), nn.ReLU(inplace=True)]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    backbone = nn.Sequential(*stage(3, w), *stage(w, 2 * w), *stage(2 * w, 4 * w, pool=False),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(options.dropout))
    return FeatureClassifier(backbone, 4 * w, num_classes)


# ----------------------------------------------------------------------------- AlexNet (the original AlexNet tutorial)

@register_model("alexnet_cifar")
def alexnet_cifar(options: ModelOptions, num_classes: int) -> FeatureClassifier:
    """The original AlexNet tutorial's CIFAR AlexNet: conv 7x7/64 pad 2, 5x5/192, 3x3/384, 3x3/256, 3x3/256, FC 2304-4096-4096.

    `width` scales the conv channels (64 is the original). The adaptive pool makes any input of at
    least 16 px work; at 32 px it is the identity (3x3 maps), as in the seed. Without BatchNorm
    (`batchnorm=false`) it is exactly the tutorial's network.
    """
    s = (options.width or 64) / 64
    c1, c2, c3, c4 = (max(8, round(c * s)) for c in (64, 192, 384, 256))
    norm = _norm2d(options)

    def conv(cin, cout, k, p):
        return [nn.Conv2d(cin, cout, k, padding=p), norm(cout), nn.ReLU(inplace=True)]

    features = nn.Sequential(
        *conv(3, c1, 7, 2), nn.MaxPool2d(2), *conv(c1, c2, 5, 2), nn.MaxPool2d(2),
        *conv(c2, c3, 3, 1), *conv(c3, c4, 3, 1), *conv(c4, c4, 3, 1), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten())
    hidden = max(64, round(4096 * s))
    p = 0.5 if options.dropout == 0.0 else options.dropout  # the tutorial's nn.Dropout() default
    backbone = nn.Sequential(features, nn.Dropout(p), nn.Linear(c4 * 9, hidden), nn.ReLU(inplace=True),
                             nn.Dropout(p), nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
    return FeatureClassifier(backbone, hidden, num_classes)


# ----------------------------------------------------------------------------- ResNets

_RESNETS = {
    "resnet18": ("basic", [2, 2, 2, 2]), "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]), "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}


def _resnet_builder(name: str):
    block, layers = _RESNETS[name]

    def build(options: ModelOptions, num_classes: int) -> FeatureClassifier:
        from tunelab.trainables.resnet import ResNetBackbone

        norm = nn.BatchNorm2d if options.batchnorm else (lambda channels: nn.Identity())
        backbone = ResNetBackbone(block, layers, width=options.width or 64, cifar_stem=options.cifar_stem,
                                  norm_layer=norm)
        return FeatureClassifier(backbone, backbone.feature_dim, num_classes)

    build.__doc__ = f"torchvision {name} layout (blocks {layers})."
    return build


for _name in _RESNETS:
    register_model(_name)(_resnet_builder(_name))


# ----------------------------------------------------------------------------- other torchvision families

# catalog.TORCHVISION_FAMILIES: torchvision's builders; their last Linear becomes `fc`.


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent module, attribute name, layer) of the last nn.Linear in registration order."""
    found = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, attr, child)
    if found is None:
        raise ConfigError("model has no final Linear layer to replace")
    return found


class _SqueezeNetFeatures(nn.Module):
    """SqueezeNet ends in a 1x1 conv classifier; its pooled 512-channel map is the feature vector."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.features = net.features
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.features(x)), 1)


def _torchvision_builder(name: str):
    def build(options: ModelOptions, num_classes: int) -> FeatureClassifier:
        _require_batchnorm(options)
        import torchvision.models as tvm

        kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        net = tvm.get_model(name, weights=None, **kwargs)
        if name.startswith("squeezenet"):
            return FeatureClassifier(_SqueezeNetFeatures(net), 512, num_classes)
        parent, attr, linear = _last_linear(net)
        setattr(parent, attr, nn.Identity())
        return FeatureClassifier(net, linear.in_features, num_classes)

    build.__doc__ = f"torchvision.models.{name} with its last Linear as `fc`."
    return build


for _name in TORCHVISION_FAMILIES:
    register_model(_name)(_torchvision_builder(_name))
