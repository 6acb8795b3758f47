"""AdaRand's adaptive class-conditional prior (Yamaguchi et al., CVPR 2024).

Features g(x) are pulled towards reference vectors z ~ N(mu_y, sigma_y^2 I). The means mu_k move
every iteration, after the model step, on detached features: running class means
mu_bar_k <- alpha*mu_bar_k + (1-alpha)*mu_hat_k (classes present in the batch only), then one
Adam step on mu with `prior_loss`, which keeps each mu_k near its class's features and the
mu_k apart from each other. sigma is never learned; the regulariser sends no gradient to mu.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tunelab.core.errors import DataError, check_choice, check_range

from tunelab.trainables.catalog import PRIOR_SCHEDULES, PRIOR_VARIANTS


def prior_lr_factor(schedule: str, variant: str, t: float) -> float:
    """The prior means' learning rate as a fraction of rand_lr at training progress t in [0, 1].

    cosine:   0.5 * (1 + cos(pi * t)), annealed to 0 (the unofficial code's schedule)
    official: cos(7 * pi * t / 16), the official code's "cosine", which ends at 0.195 * rand_lr
    auto:     official under prior_variant=official, cosine under the paper's variant
    """
    check_choice("prior_schedule", schedule, PRIOR_SCHEDULES)
    if schedule == "auto":
        schedule = "official" if variant == "official" else "cosine"
    t = min(1.0, max(0.0, t))
    if schedule == "official":
        return math.cos(7 * math.pi * t / 16)
    return 0.5 * (1 + math.cos(math.pi * t))


class ClassConditionalPrior(nn.Module):
    """Per-class Gaussian prior N(mu_k, sigma_k^2 I) over features; mu, sigma: (K, D)."""

    def __init__(self, mu: torch.Tensor, sigma: torch.Tensor, alpha: float = 0.5):
        super().__init__()
        if mu.shape != sigma.shape or mu.dim() != 2:
            raise ValueError(f"mu and sigma must both be (K, D), got {tuple(mu.shape)} and {tuple(sigma.shape)}")
        check_range("alpha", alpha, 0, 1, high_open=True)
        self.alpha = float(alpha)
        self.mu = nn.Parameter(mu.detach().clone().float())
        self.register_buffer("sigma", sigma.detach().clone().float())
        # Persistent, as in the official code: it survives checkpoints.
        self.register_buffer("running_mu", mu.detach().clone().float())

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw z ~ N(mu_y, sigma_y^2 I) per label; not reparameterised (no gradient to mu)."""
        noise = torch.randn((labels.shape[0], self.mu.shape[1]), generator=generator, device=self.mu.device)
        return self.mu[labels] + self.sigma[labels] * noise

    @torch.no_grad()
    def update_running(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """mu_bar_k <- alpha*mu_bar_k + (1-alpha)*mean of the batch's class-k features, for present k."""
        k = self.mu.shape[0]
        onehot = F.one_hot(labels, k).to(features.dtype)
        counts = onehot.sum(0)
        present = counts > 0
        batch_means = (onehot.T @ features) / counts.clamp_min(1)[:, None]
        updated = self.alpha * self.running_mu + (1 - self.alpha) * batch_means.to(self.running_mu.dtype)
        self.running_mu.copy_(torch.where(present[:, None], updated, self.running_mu))

    def inter_cos(self) -> float:
        """Mean pairwise cosine between distinct class means (the paper's geometry diagnostic)."""
        with torch.no_grad():
            cos = _pairwise_cos(self.mu)
            k = cos.shape[0]
            return ((cos.sum() - cos.diagonal().sum()) / (k * (k - 1))).item() if k > 1 else float("nan")


def _pairwise_cos(mu: torch.Tensor) -> torch.Tensor:
    normed = F.normalize(mu, dim=1)
    return normed @ normed.T


def prior_loss(mu: torch.Tensor, running_mu: torch.Tensor, variant: str = "paper") -> torch.Tensor:
    """The prior's objective.

    paper:    mean_k D(mu_k, mu_bar_k) - mean_{k != l} D(mu_k, mu_l),  D(u, v) = 1 - cos(u, v)
    official: mean_k (cos(mu_k, mu_bar_k) - 1)^2 + mean_{k != l} cos(mu_k, mu_l)^2
    """
    check_choice("prior_variant", variant, PRIOR_VARIANTS)
    k = mu.shape[0]
    intra_cos = F.cosine_similarity(mu, running_mu.detach(), dim=1)
    cos = _pairwise_cos(mu)
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=mu.device)
    pairs = cos[off_diagonal]
    if variant == "paper":
        inter = (1 - pairs).mean() if k > 1 else mu.new_zeros(())
        return (1 - intra_cos).mean() - inter
    inter = pairs.square().mean() if k > 1 else mu.new_zeros(())
    return (intra_cos - 1).square().mean() + inter


@torch.no_grad()
def class_feature_stats(features_by_batch, num_classes: int, class_names=None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean and std of features, accumulated in float64; sigma clamped at 1e-6.

    `features_by_batch` yields (features (B, D), labels (B,)). float64 because E[f^2] - mu^2
    cancels catastrophically in float32 when |mu| >> sigma.
    """
    sums = sq_sums = counts = None
    for features, labels in features_by_batch:
        f = features.to(torch.float64)
        onehot = F.one_hot(labels, num_classes).to(torch.float64)
        if sums is None:
            sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64, device=f.device)
            sq_sums = torch.zeros_like(sums)
            counts = torch.zeros(num_classes, dtype=torch.float64, device=f.device)
        sums += onehot.T @ f
        sq_sums += onehot.T @ (f * f)
        counts += onehot.sum(0)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        name = class_names[empty[0]] if class_names else empty[0]
        raise DataError(f"class {empty[0]} ({name!r}) has no training examples; AdaRand's class-conditional "
                        "prior needs at least one per class")
    mu = sums / counts[:, None]
    var = (sq_sums / counts[:, None] - mu * mu).clamp_min(0)
    return mu, var.sqrt().clamp_min(1e-6)
