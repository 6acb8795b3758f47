"""Search space of plain supervised classification (seeds 002-004's hyperparameters)."""
from search_spaces.base import Choice, FloatRange, IntRange, SearchSpace

OPTIMISATION: SearchSpace = {
    "lr": FloatRange(1e-4, 3e-1, log=True, unit="per step at the trial's batch size",
                     reason="the most sensitive knob; spans Adam's and SGD's useful ranges"),
    "weight_decay": FloatRange(1e-6, 1e-2, log=True, unit="L2 coefficient (decoupled for adamw)",
                               reason="regularisation strength; acts multiplicatively, hence log"),
    "optimizer": Choice(("sgd", "adam", "adamw", "rmsprop"), unit="name",
                        reason="seed 003/004 compare these; each needs its own lr, so TPE models them jointly"),
    "momentum": FloatRange(0.8, 0.99, unit="SGD/RMSprop momentum", reason="ignored by adam/adamw"),
    "schedule": Choice(("cosine", "step", "none"), unit="name", reason="lr decay shape"),
    "label_smoothing": FloatRange(0.0, 0.2, unit="probability mass", reason="calibration vs. fit"),
}

SPACE: SearchSpace = {
    **OPTIMISATION,
    "init": Choice(("default", "he", "xavier"), unit="name", role="scientific",
                   reason="seed 004: He for ReLU nets, Xavier for sigmoid/tanh"),
    "batchnorm": Choice((True, False), unit="on/off", role="scientific", reason="seed 004's BatchNorm study"),
    "batch_size": Choice((32, 64, 128), unit="images per step", reason="noise scale of SGD; changes optimal lr"),
    "crop_padding": IntRange(0, 3, unit="pixels of zero padding before the random crop",
                             reason="translation augmentation strength"),
}
