"""Search space of plain supervised classification (the hyperparameters of the original classifier tutorials)."""
from tunelab.search_spaces.base import Choice, Conditional, FloatRange, IntRange, SearchSpace


def _lr(low: float, high: float) -> FloatRange:
    return FloatRange(low, high, log=True, unit="per step at the trial's batch size")


_MOMENTUM = FloatRange(0.8, 0.99, unit="momentum")

OPTIMISATION: SearchSpace = {
    "optimizer": Choice(("sgd", "adam", "adamw", "rmsprop"), unit="name",
                        reason="the original CNN lecture and optimizer notebook compare these; each has its own useful lr range (below)"),
    # Measured (benchmarks/lr-per-optimizer.md): small CNN, digits 5-9 with 10
    # images per class, 30 epochs, val/acc over 2 seeds; chance is 0.2. SGD is at chance below 1e-3
    # and best at 0.1-0.3; Adam/AdamW best at 1e-2 and at 0.13-0.56 from 0.1 up; RMSprop best at
    # 1e-4 and at 0.20-0.52 from 1e-2 up. One range for all would spend most trials diverging.
    "lr": Conditional("optimizer", (("sgd", _lr(1e-2, 3e-1)), ("adam", _lr(3e-4, 3e-2)),
                                    ("adamw", _lr(3e-4, 3e-2)), ("rmsprop", _lr(2e-5, 2e-3))),
                      unit="per step at the trial's batch size",
                      reason="the most sensitive knob; its useful range depends on the optimizer"),
    "weight_decay": FloatRange(1e-6, 1e-2, log=True, unit="L2 coefficient (decoupled for adamw)",
                               reason="regularisation strength; acts multiplicatively, hence log"),
    "momentum": Conditional("optimizer", (("sgd", _MOMENTUM), ("adam", None), ("adamw", None),
                                          ("rmsprop", _MOMENTUM)),
                            unit="SGD/RMSprop momentum", reason="Adam and AdamW have none (their betas stay fixed)"),
    "schedule": Choice(("cosine", "step", "none"), unit="name", reason="lr decay shape"),
    "label_smoothing": FloatRange(0.0, 0.2, unit="probability mass", reason="calibration vs. fit"),
}

SPACE: SearchSpace = {
    **OPTIMISATION,
    "init": Choice(("default", "he", "xavier"), unit="name", role="scientific",
                   reason="the original optimizer notebook: He for ReLU nets, Xavier for sigmoid/tanh"),
    "batchnorm": Choice((True, False), unit="on/off", role="scientific", reason="the original optimizer notebook's BatchNorm study"),
    "batch_size": Choice((32, 64, 128), unit="images per step", reason="noise scale of SGD; changes optimal lr"),
    "crop_padding": IntRange(0, 3, unit="pixels of zero padding before the random crop",
                             reason="translation augmentation strength"),
}
