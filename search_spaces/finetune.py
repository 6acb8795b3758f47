"""Search spaces of the fine-tuning family: plain, RandReg, AdaRand (Yamaguchi et al., CVPR 2024)."""
from tunelab.search_spaces.base import Choice, FloatRange, SearchSpace

FINETUNE: SearchSpace = {
    "lr": FloatRange(1e-3, 3e-1, log=True, unit="SGD step at batch 64",
                     reason="official 0.01 for 200 epochs; short runs need larger steps"),
    "weight_decay": FloatRange(1e-6, 1e-2, log=True, unit="L2 coefficient",
                               reason="pull towards zero competes with the pull towards the prior"),
    "fc_lr_factor": FloatRange(1.0, 30.0, log=True, unit="x lr for the new classifier",
                               reason="a fresh layer on pretrained features often wants a larger step"),
}

_REG_LAMBDA = FloatRange(1e-2, 10.0, log=True, unit="weight of mse(features, z) (mean over B*D)",
                         role="scientific", reason="strength of the prior; the paper's lambda")

RANDREG: SearchSpace = {
    **FINETUNE,
    "reg_lambda": _REG_LAMBDA,
    "prior": Choice(("normal", "uniform", "pretrained"), unit="name", role="scientific",
                    reason="the paper's three class-agnostic priors; its best differs per dataset"),
}

ADARAND: SearchSpace = {
    **FINETUNE,
    "reg_lambda": _REG_LAMBDA,
    "rand_lr": FloatRange(1e-4, 1e-1, log=True, unit="Adam step of the prior means", role="scientific",
                          reason="how fast the class means adapt; official 1e-2, the original AdaRand write-up 1e-3"),
    "alpha": FloatRange(0.0, 0.99, unit="momentum of the running class means",
                        reason="0 uses only the current batch; near 1 a long average"),
    "prior_variant": Choice(("paper", "official"), unit="name", role="scientific",
                            reason="paper pushes means to negative cosines, official to orthogonal ones"),
}
