"""Every name a config key accepts, readable without importing torch.

The command line checks `--set model=...`, `optimizer=...` or `dataset=...` before any work
starts, and must do so in a fraction of torch's import time. So the choices live here, as plain
data; the modules that build the objects (models, optim, heads, data, adarand) import them from
here, and their registries refuse a name this module does not list, so the two cannot drift.
"""
from __future__ import annotations

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("none", "step", "multistep", "exponential", "cosine")
INITS = ("default", "he", "xavier")
DEVICES = ("auto", "cpu", "cuda")
HEADS = ("arcface", "cosface", "normsoftmax")
RANDREG_PRIORS = ("normal", "uniform", "pretrained")
PRIOR_VARIANTS = ("paper", "official")
PRIOR_SCHEDULES = ("auto", "cosine", "official")

# Models: tunelab's own, the CIFAR-stem ResNets, and torchvision families (the original optimizer notebook's list plus a
# few modern ones), built in tunelab.trainables.models.
OWN_MODELS = ("small_cnn", "alexnet_cifar")
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
TORCHVISION_FAMILIES = (
    "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "squeezenet1_1", "densenet121", "googlenet", "inception_v3",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "mobilenet_v2", "mobilenet_v3_small", "resnext50_32x4d",
    "wide_resnet50_2", "mnasnet0_5", "mnasnet1_0", "efficientnet_b0", "regnet_y_400mf", "convnext_tiny",
)
MODELS = OWN_MODELS + RESNETS + TORCHVISION_FAMILIES

# Datasets with loaders registered in tunelab.trainables.data. A name ending in ':' takes a location (imagefolder:PATH).
DATASETS = ("digits", "cifar10", "cifar100", "imagefolder:")


def model_names() -> list[str]:
    return sorted(MODELS)


def dataset_names() -> list[str]:
    """The names `dataset=` accepts, as the user writes them (imagefolder:PATH)."""
    return [f"{n}PATH" if n.endswith(":") else n for n in DATASETS]


def dataset_key(name: str) -> str | None:
    """The catalog entry `name` selects ('digits', or 'imagefolder:' for 'imagefolder:/data/x'), None if unknown."""
    if name in DATASETS:
        return name
    prefix = name.split(":", 1)[0] + ":" if ":" in name else None
    return prefix if prefix in DATASETS else None


def check_listed(kind: str, name: str, listed) -> None:
    """For the registries: a registered name must be listed here, or the command line would refuse it."""
    if name not in listed:
        raise KeyError(f"{kind} {name!r} is registered but not listed in tunelab.trainables.catalog; add it there")
