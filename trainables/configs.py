"""Every method's config: frozen dataclasses of plain values, importable without torch.

The command line builds and checks these (unknown keys, ranges, choices) before any work starts;
the training code (engine, method modules) reads them. `METHOD_SPECS` names each method's config
class and the module whose import registers its training code, in the order `compare` runs them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from tunelab.trainables import catalog
from tunelab.core.errors import ConfigError, check_choice, check_range
from tunelab.trainables.subsets import parse_classes

if TYPE_CHECKING:
    from tunelab.trainables.models import ModelOptions


@dataclass(frozen=True)
class DataKeys:
    """The config keys that define a dataset and its split: declared here once, inherited by every
    method's config (TrainConfig) and by DataOptions."""

    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int = 0  # 0: the dataset's own default (digits 16, CIFAR 32, folders 224)
    val_fraction: float = 0.1  # share of the training data held out for validation
    split_seed: int = 0  # fixed across trials: every trial is scored on the same val images
    classes: str = ""  # a subset of class ids, e.g. "5-9" or "1,3,5" (labels re-indexed); "" = all
    train_per_class: int = 0  # keep N training images per class (after val and test are carved); 0 = all


@dataclass(frozen=True)
class DataOptions(DataKeys):
    """What identifies a loaded dataset (shared by every trial of an experiment): declared beside
    the config keys it extends, so that configs need nothing from the data loaders."""

    resize: str = "crop"  # folders: 'crop' (shorter side, then centre crop) or 'stretch'
    max_memory_mb: int = 4096  # folders larger than this once decoded are streamed


@dataclass(frozen=True)
class TrainConfig(DataKeys):
    """Settings every method shares. Defaults train the small CNN on digits to >= 95% in seconds.

    The data keys (dataset, data_dir, image_size, val_fraction, split_seed, classes, train_per_class)
    come from DataKeys.
    """

    # model (ModelOptions, with `model` for its `name`)
    model: str = "small_cnn"
    width: int = 0  # 0: architecture default
    cifar_stem: bool = True
    batchnorm: bool = True
    init: str = "default"
    dropout: float = 0.0
    # optimisation
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    gamma: float = 0.1  # decay factor of step / multistep / exponential
    step_size: int = 10  # epochs between decays (step)
    milestones: tuple[int, ...] = ()  # epochs at which multistep decays
    milestone_fractions: tuple[float, ...] = ()  # multistep at these fractions of `epochs` (if no milestones)
    min_lr_factor: float = 0.0  # cosine floor, as a fraction of lr
    epochs: int = 15
    batch_size: int = 64
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    # augmentation (batched, on the training device)
    crop_padding: int = -1  # -1: image_size // 8 (4 px at 32 px); 0 = no crop
    hflip: bool | None = None  # None: the dataset's default (off for digits, on for photos)
    vflip: bool = False  # the original AlexNet tutorial's vertical flip
    # runtime
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # autocast to bfloat16 on CUDA
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    eval_batch_size: int = 512
    threads: int = 0  # CPU threads for torch; 0 = leave as is (Ray sets it from cpus-per-trial)
    gpu_memory_fraction: float = 0.0  # cap this process' share of the GPU; 0 = no cap

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if catalog.dataset_key(self.dataset) is None:
            raise ConfigError(f"dataset={self.dataset!r} is not known; choose from: {', '.join(catalog.dataset_names())}")
        check_choice("model", self.model, catalog.model_names())
        check_choice("init", self.init, catalog.INITS)
        check_choice("optimizer", self.optimizer, catalog.OPTIMIZERS)
        check_choice("schedule", self.schedule, catalog.SCHEDULES)
        check_choice("device", self.device, catalog.DEVICES)
        check_range("lr", self.lr, 0, None, low_open=True)
        check_range("epochs", self.epochs, 1)
        check_range("batch_size", self.batch_size, 1)
        check_range("eval_batch_size", self.eval_batch_size, 1)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("momentum", self.momentum, 0, 1, high_open=True)
        check_range("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        check_range("grad_clip", self.grad_clip, 0)
        check_range("warmup_epochs", self.warmup_epochs, 0, self.epochs, high_name="epochs")
        check_range("gamma", self.gamma, 0, 1, low_open=True)
        check_range("step_size", self.step_size, 1)
        check_range("min_lr_factor", self.min_lr_factor, 0, 1)
        check_range("val_fraction", self.val_fraction, 0, 1, low_open=True, high_open=True)
        parse_classes(self.classes)  # the ids are checked against the dataset when it loads
        check_range("train_per_class", self.train_per_class, 0)
        check_range("image_size", self.image_size, 0)
        check_range("width", self.width, 0)
        check_range("crop_padding", self.crop_padding, -1)
        check_range("dropout", self.dropout, 0, 1, high_open=True)
        check_range("threads", self.threads, 0)
        check_range("gpu_memory_fraction", self.gpu_memory_fraction, 0, 1)
        for milestone in self.milestones:
            check_range("milestones", milestone, 1, self.epochs, high_name="epochs")
        for fraction in self.milestone_fractions:
            check_range("milestone_fractions", fraction, 0, 1, low_open=True, high_open=True)

    def data_options(self) -> DataOptions:
        return DataOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataKeys)})

    def model_options(self) -> ModelOptions:
        from tunelab.trainables.models import ModelOptions

        return ModelOptions(name=self.model, **{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelOptions)
                                                if f.name != "name"})


@dataclass(frozen=True)
class ClassifierConfig(TrainConfig):
    """All of TrainConfig; defaults train the small CNN on digits to >= 95% val/acc in seconds."""


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    model: str = "resnet18"
    width: int = 16  # CPU-sized; use width=64 cifar_stem=false for torchvision's ResNet-18 (ImageNet weights)
    pretrained: str = "auto"  # 'auto' (offline rotation-pretrained, cached), 'imagenet', or a checkpoint path
    optimizer: str = "sgd"
    lr: float = 0.1  # official 0.01 is for 200 epochs from ImageNet weights; see trainables/finetune.py
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0  # the official optimizer has none; the search spaces tune it
    schedule: str = "multistep"
    milestone_fractions: tuple[float, ...] = (0.3, 0.6, 0.8)
    epochs: int = 15  # official: 200 on Stanford Cars; 15 reaches the plateau on digits
    fc_lr_factor: float = 1.0  # new classifier's lr = lr * fc_lr_factor
    # a pretrained file that records no source data is refused (it may hold this run's own images)
    # unless this says the user vouches for it; the run's checkpoints and `best` then record that
    allow_unknown_source: bool = False

    def validate(self) -> None:
        super().validate()
        if not self.pretrained:
            raise ConfigError("pretrained='' is not valid; choose from: auto, imagenet, or a checkpoint path")
        check_range("fc_lr_factor", self.fc_lr_factor, 0, None, low_open=True)


@dataclass(frozen=True)
class RandRegConfig(FinetuneConfig):
    reg_lambda: float = 1.0
    prior: str = "normal"  # N(0,1), U(0,1), or N(mu_s, sigma_s^2) of the pretrained features

    def validate(self) -> None:
        super().validate()
        check_range("reg_lambda", self.reg_lambda, 0)
        check_choice("prior", self.prior, catalog.RANDREG_PRIORS)


@dataclass(frozen=True)
class AdaRandConfig(FinetuneConfig):
    reg_lambda: float = 1.0
    alpha: float = 0.5  # momentum of the running class means
    rand_lr: float = 1e-2  # Adam lr of the prior means, annealed per iteration by prior_schedule
    prior_variant: str = "paper"
    prior_schedule: str = "auto"  # official's cos(7 pi t / 16) under prior_variant=official, else half-cosine to 0

    def validate(self) -> None:
        super().validate()
        check_range("reg_lambda", self.reg_lambda, 0)
        check_range("alpha", self.alpha, 0, 1, high_open=True)
        check_range("rand_lr", self.rand_lr, 0, None, low_open=True)
        check_choice("prior_variant", self.prior_variant, catalog.PRIOR_VARIANTS)
        check_choice("prior_schedule", self.prior_schedule, catalog.PRIOR_SCHEDULES)


@dataclass(frozen=True)
class ArcFaceConfig(TrainConfig):
    """The original ArcFace tutorial's head defaults (s=30, m=0.5, 512-d embedding) on a CIFAR-stem ResNet-18.

    Optimisation differs from the tutorial on purpose: its plain SGD at lr 1e-3 needs ~100 epochs;
    the shared Adam + cosine default converges in 15 on digits (val/acc and Recall@1 >= 0.95).
    easy_margin defaults to False (arcface-pytorch) rather than the tutorial's True.
    """

    model: str = "resnet18"
    width: int = 16  # narrow ResNet-18 so the CPU default finishes in about a minute; 64 = torchvision's
    head: str = "arcface"
    s: float = 30.0
    m: float = 0.5
    easy_margin: bool = False
    n_feats: int = 512  # embedding size; 0 = the backbone's pooled features, no projection
    head_lr_factor: float = 1.0  # head and projection lr = lr * head_lr_factor

    def validate(self) -> None:
        super().validate()
        check_choice("head", self.head, catalog.HEADS)
        check_range("s", self.s, 0, None, low_open=True)
        # Every head's margin has a documented range, normsoftmax's (which ignores m) included, so
        # a search over heads never records an impossible m next to its best trial.
        if self.head == "cosface":
            check_range("m", self.m, 0, 1, high_open=True)
        else:
            check_range("m", self.m, 0, math.pi / 2, high_open=True)
        check_range("n_feats", self.n_feats, 0)
        check_range("head_lr_factor", self.head_lr_factor, 0, None, low_open=True)


class MethodSpec(NamedTuple):
    config_class: type[TrainConfig]
    module: str  # imported to register the method's training code (`@register_method`)


METHOD_SPECS: dict[str, MethodSpec] = {
    "classifier": MethodSpec(ClassifierConfig, "tunelab.trainables.classifier"),
    "finetune": MethodSpec(FinetuneConfig, "tunelab.trainables.finetune"),
    "randreg": MethodSpec(RandRegConfig, "tunelab.trainables.finetune"),
    "adarand": MethodSpec(AdaRandConfig, "tunelab.trainables.finetune"),
    "arcface": MethodSpec(ArcFaceConfig, "tunelab.trainables.arcface"),
}
