"""Margin heads for metric learning: ArcFace, CosFace and a plain normalised softmax.

Each head holds one weight row per class, `(out_features, in_features)`, and scores an
embedding by the cosine to each row. `forward(features, labels)` applies the margin to the true
class (training); `logits(features)` is `s * cos` with no margin and no labels (prediction).
They are device- and dtype-agnostic and usable in any training loop:

    head = ArcFace(512, num_classes)
    loss = F.cross_entropy(head(embeddings, labels), labels)      # training
    predictions = head.logits(embeddings).argmax(1)               # evaluation: no labels
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tunelab.trainables.catalog import HEADS
from tunelab.core.errors import check_range

# sqrt(1 - cos^2) has an infinite slope at |cos| = 1; flooring its argument keeps gradients
# finite there and changes sin by at most 1e-6, far below float32 resolution of a logit.
_SIN_FLOOR = 1e-12


class CosineHead(nn.Module):
    """Normalised softmax: logits = s * cos(theta). The m = 0 reference point of the margin heads."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0):
        super().__init__()
        check_range("s", s, 0, None, low_open=True)
        self.in_features, self.out_features, self.s = in_features, out_features, float(s)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """Cosines in float32 at least, also inside bf16 autocast: in bfloat16 (8 mantissa bits)
        cos near 1 is flat for angles below ~0.06 rad and s * cos is off by up to ~0.1 * s, so
        the margin would act on rounding noise. The head is two small matmuls; float32 costs nothing."""
        dtype = torch.promote_types(torch.promote_types(features.dtype, self.weight.dtype), torch.float32)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return F.normalize(features.to(dtype)) @ F.normalize(self.weight.to(dtype)).T

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Margin-free scores for prediction; labels are never needed."""
        return self.s * self.cosine(features)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        """The true class's cos-like score with the margin applied (none here)."""
        return cos

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(features)
        is_target = F.one_hot(labels, self.out_features).to(device=cos.device, dtype=torch.bool)
        return self.s * torch.where(is_target, self.target_logit(cos), cos)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, s={self.s}"


class ArcFace(CosineHead):
    """Additive angular margin (Deng et al. 2019): the true class scores cos(theta + m).

    easy_margin=True keeps cos(theta) where cos <= 0. Otherwise, past theta = pi - m (where
    theta + m would pass pi and cos(theta + m) would rise again) the score is
    cos(theta) - sin(pi - m) * m, as in arcface-pytorch, so it never increases with theta.
    """

    def __init__(self, in_features: int, out_features: int, s: float = 30.0, m: float = 0.5,
                 easy_margin: bool = False):
        super().__init__(in_features, out_features, s)
        check_range("m", m, 0, math.pi / 2, high_open=True)
        self.m, self.easy_margin = float(m), bool(easy_margin)
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.threshold = math.cos(math.pi - m)
        self.fallback = math.sin(math.pi - m) * m

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        sin = torch.sqrt(torch.clamp(1.0 - cos * cos, min=_SIN_FLOOR, max=1.0))
        phi = cos * self.cos_m - sin * self.sin_m
        if self.easy_margin:
            return torch.where(cos > 0, phi, cos)
        return torch.where(cos > self.threshold, phi, cos - self.fallback)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", m={self.m}, easy_margin={self.easy_margin}"


class CosFace(CosineHead):
    """Additive cosine margin (Wang et al. 2018): the true class scores cos(theta) - m."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0, m: float = 0.35):
        super().__init__(in_features, out_features, s)
        check_range("m", m, 0, 1, high_open=True)
        self.m = float(m)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return cos - self.m

    def extra_repr(self) -> str:
        return super().extra_repr() + f", m={self.m}"




def build_head(kind: str, in_features: int, out_features: int, s: float, m: float,
               easy_margin: bool = False) -> CosineHead:
    if kind == "arcface":
        return ArcFace(in_features, out_features, s=s, m=m, easy_margin=easy_margin)
    if kind == "cosface":
        return CosFace(in_features, out_features, s=s, m=m)
    if kind == "normsoftmax":
        return CosineHead(in_features, out_features, s=s)
    from tunelab.core.errors import ConfigError
    raise ConfigError(f"head={kind!r} is not valid; choose from: {', '.join(HEADS)}")
