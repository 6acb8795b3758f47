"""Search space of ArcFace metric learning (Deng et al. 2019, ArcFace; Wang et al. 2018, CosFace)."""
from tunelab.search_spaces.base import Choice, Conditional, FloatRange, SearchSpace

SPACE: SearchSpace = {
    "s": FloatRange(8.0, 64.0, log=True, unit="logit scale (radius of the hypersphere)", role="scientific",
                    reason="too small cannot reach confident softmax; ArcFace uses 64, arcface-pytorch 30"),
    # The margin is in radians for ArcFace and in cosine units for CosFace; NormSoftmax has none, and
    # only ArcFace has the easy-margin variant: sampled where they apply, never recorded elsewhere.
    "m": Conditional("head", (("arcface", FloatRange(0.1, 0.8, unit="radians")),
                              ("cosface", FloatRange(0.1, 0.6, unit="cosine units")),
                              ("normsoftmax", None)),
                     unit="radians (arcface) / cosine units (cosface)", role="scientific",
                     reason="margin; the paper's best is 0.4-0.55, CosFace's 0.35-0.40; normsoftmax has none"),
    "easy_margin": Conditional("head", (("arcface", Choice((False, True), unit="on/off")), ("cosface", None),
                                        ("normsoftmax", None)),
                               unit="on/off", reason="ArcFace only: the original ArcFace tutorial uses True, arcface-pytorch False"),
    "head": Choice(("arcface", "cosface", "normsoftmax"), unit="name", role="scientific",
                   reason="angular vs cosine margin vs no margin (the reference point)"),
    "n_feats": Choice((64, 128, 256, 512), unit="embedding dimensions", reason="the original ArcFace tutorial uses 512"),
    "lr": FloatRange(1e-4, 1e-2, log=True, unit="per step at the trial's batch size",
                     reason="margin losses diverge at high lr; the original ArcFace tutorial uses 1e-3"),
    "weight_decay": FloatRange(1e-6, 1e-3, log=True, unit="L2 coefficient", reason="the original ArcFace tutorial uses 5e-4"),
    "head_lr_factor": FloatRange(0.3, 10.0, log=True, unit="x lr for head and projection",
                                 reason="class centres may need to move faster than the backbone"),
}
